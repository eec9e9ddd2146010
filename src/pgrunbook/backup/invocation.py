"""Command lines for pg_dump and pg_restore: the connection without its password.

The password reaches the child only through ``PGPASSWORD`` in its environment; argv (which
``ps`` shows to every user) and the printed command line never hold it.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import dataclass, field
from typing import Final

from psycopg.conninfo import make_conninfo

from pgrunbook import __version__
from pgrunbook.dsn import MASK, ConnInfo, scrub

APPLICATION_NAME: Final = f"pgrunbook/{__version__}"
CONNECT_TIMEOUT: Final = "10"


def conninfo_without_password(info: ConnInfo, tool: str) -> str:
    """The libpq connection string for ``-d``: every parameter but the password."""
    params = {k: v for k, v in info.params.items() if k != "password"}
    params.setdefault("connect_timeout", CONNECT_TIMEOUT)
    params.setdefault("application_name", f"{APPLICATION_NAME}/{tool}")
    return make_conninfo("", **params)


@dataclass(frozen=True)
class Invocation:
    """One run of a client program: its argv and the password it gets from the environment."""

    argv: list[str]
    password: str | None = field(default=None, repr=False)

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.password is not None:
            env["PGPASSWORD"] = self.password
        return env

    def display(self) -> str:
        """The command line as a shell would take it, password masked."""
        prefix = f"PGPASSWORD={MASK} " if self.password is not None else ""
        return prefix + scrub(shlex.join(self.argv))

    def run(self, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv,
            env=self.environment(),
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
            check=False,
        )

    def first_error(self, stderr: str) -> str:
        """pg_dump / pg_restore's first error line, password scrubbed."""
        lines = [line.strip() for line in stderr.splitlines() if line.strip()]
        errors = [line for line in lines if "error:" in line or "FATAL:" in line]
        first = (errors or lines or ["no message"])[0]
        return scrub(first, self.password)
