"""Which database to talk to: ``--dsn`` > environment > ``.env``, and which endpoint for what.

Prisma's convention: ``DATABASE_URL`` is the app's (often pooled) URL and ``DIRECT_URL`` the
one migrations use. Reads may go through either; anything needing a session (DDL,
``CONCURRENTLY``, ``SET lock_timeout``, advisory locks, pg_dump) uses the direct endpoint.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from dotenv import dotenv_values
from dotenv.parser import parse_stream

from pgrunbook.dsn import ConnInfo, parse_dsn
from pgrunbook.errors import ConfigError

ENV_VARS: Final = ("DIRECT_URL", "DATABASE_URL")


@dataclass(frozen=True)
class Target:
    """The resolved database: the app's endpoint and the one for session work."""

    app: ConnInfo
    direct: ConnInfo | None
    notes: tuple[str, ...] = field(default=())
    warn: Callable[[str], None] = field(default=lambda text: None, compare=False, repr=False)

    def reader(self) -> ConnInfo:
        """For read-only work (discovery, monitoring): any endpoint will do."""
        return self.direct or self.app

    def session(self, purpose: str = "this command") -> ConnInfo:
        """For work that needs a real session; never a pooled endpoint."""
        if self.direct is not None:
            for note in self.notes:
                self.warn(note)
            return self.direct
        raise ConfigError(
            f"{self.app.source} points at a connection pooler ({self.app.pooler_reason}) "
            f"and {purpose} needs a direct session",
            "set DIRECT_URL to the direct endpoint (Neon: the host without '-pooler')",
        )


def _read_dotenv(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    try:
        # python-dotenv skips a line it cannot parse (and logs it); a broken DATABASE_URL
        # line must not turn into "no database given", so refuse the file instead.
        with path.open(encoding="utf-8") as stream:
            broken = [b.original.line for b in parse_stream(stream) if b.error]
        if broken:
            raise ConfigError(
                f"cannot parse {path} at line {broken[0]}",
                "fix the line (KEY=value, quotes closed) or remove the file",
            )
        values = dotenv_values(path, encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}", "fix or remove the file") from None
    return {k: v for k, v in values.items() if v is not None}


def resolve_target(
    dsn: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    warn: Callable[[str], None] | None = None,
) -> Target:
    """Resolve the target database; raise ConfigError with one line when there is none."""
    environ = os.environ if environ is None else environ
    warn = warn or (lambda text: print(f"pgrunbook: {text}", file=sys.stderr))
    if dsn is not None:
        return _from_urls(app=parse_dsn(dsn, "--dsn"), direct=None, warn=warn)

    dotenv_path = (cwd or Path.cwd()) / ".env"
    dotenv: dict[str, str] | None = None
    found: dict[str, ConnInfo] = {}
    for var in ENV_VARS:
        if environ.get(var):
            found[var] = parse_dsn(environ[var], var)
            continue
        if dotenv is None:
            dotenv = _read_dotenv(dotenv_path)
        if dotenv.get(var):
            found[var] = parse_dsn(dotenv[var], f"{var} in {dotenv_path}")
    if not found:
        raise ConfigError(
            "no database given",
            "pass --dsn, set DATABASE_URL (and DIRECT_URL) in the environment or in .env, "
            "or start the embedded one with 'pgrunbook demo --keep'",
        )
    direct = found.get("DIRECT_URL")
    app = found.get("DATABASE_URL", direct)
    assert app is not None
    return _from_urls(app=app, direct=direct, warn=warn)


def _from_urls(app: ConnInfo, direct: ConnInfo | None, warn: Callable[[str], None]) -> Target:
    notes: list[str] = []
    if direct is not None and direct.pooled:
        raise ConfigError(
            f"{direct.source} points at a connection pooler ({direct.pooler_reason})",
            "DIRECT_URL must be the direct endpoint (Neon: the host without '-pooler')",
        )
    if direct is None:
        if not app.pooled:
            direct = app
        elif app.is_neon or "-pooler." in app.host:
            direct = app.direct()
            note = (
                f"{app.source} is Neon's pooled endpoint; using the direct host "
                f"{direct.host} for session work (set DIRECT_URL to choose it yourself)"
            )
            notes.append(note)
    return Target(app=app, direct=direct, notes=tuple(notes), warn=warn)
