"""The safety gate: no change without a way back.

``apply``, ``fix constraints``, ``cleanup --execute`` and ``maintain --full`` first look for a
verified full backup recorded in ``pgrunbook.backups`` within ``max_age``; without one they
take one, as the policy says: ``pg_dump`` (a verified archive in ``directory``), ``neon`` (a
branch ``backup-YYYYMMDD-HHMM``, recorded in the same table), or ``auto`` (a Neon branch on a
Neon host, pg_dump elsewhere). ``none`` skips the gate; it must be asked for.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Final, Literal

import psycopg

from pgrunbook import __version__
from pgrunbook.backup.dump import BackupOptions, plan_backup, take_backup
from pgrunbook.backup.record import BackupRecord, latest_backup, record_backup
from pgrunbook.dsn import ConnInfo
from pgrunbook.errors import PgRunbookError
from pgrunbook.neon.api import NeonApi
from pgrunbook.neon.client import NeonBranches, backup_branch_name
from pgrunbook.neon.settings import NeonSettings

BackupMode = Literal["auto", "pg_dump", "neon", "none"]
MODES: Final = ("auto", "pg_dump", "neon", "none")
DEFAULT_MAX_AGE: Final = timedelta(hours=24)
VERSION_SQL: Final = "SELECT current_setting('server_version')"


@dataclass(frozen=True)
class GatePolicy:
    mode: BackupMode = "auto"
    max_age: timedelta = DEFAULT_MAX_AGE
    directory: Path = Path()
    pg_bin: Path | None = None


@dataclass(frozen=True)
class GateResult:
    how: Literal["recent", "pg_dump", "neon", "none"]
    detail: str
    file: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"how": self.how, "detail": self.detail, "file": self.file}


def _hours(age: timedelta) -> str:
    return f"{age.total_seconds() / 3600:,.1f} h"


def ensure_backup(
    conn: psycopg.Connection[Any],
    info: ConnInfo,
    policy: GatePolicy,
    *,
    say: Callable[[str], None] = lambda text: None,
) -> GateResult:
    """A recent backup, or one taken now; PgRunbookError when none could be made."""
    if policy.mode == "none":
        return GateResult("none", "no backup checked or taken (--backup none)")
    recent = latest_backup(conn)
    if recent is not None and recent.age <= policy.max_age:
        return GateResult("recent", f"backup {recent.file}, {_hours(recent.age)} old", recent.file)
    why = (
        f"the last backup is {_hours(recent.age)} old"
        if recent is not None
        else "no backup is recorded in this database"
    )
    kind = policy.mode if policy.mode != "auto" else ("neon" if info.is_neon else "pg_dump")
    say(f"{why} (--backup-max-age {_hours(policy.max_age)}): taking one first ({kind})")
    if kind == "neon":
        return _neon_branch(conn)
    plan = plan_backup(conn, info, BackupOptions(directory=policy.directory, pg_bin=policy.pg_bin))
    result = take_backup(conn, plan)
    if not result.verified or result.backup_id is None:
        raise PgRunbookError(
            f"the backup {plan.output} could not be "
            + ("verified" if not result.verified else "recorded in pgrunbook.backups"),
            "take one with 'pgrunbook backup' and look at its report, or pass --backup none "
            "if you have another way back",
        )
    return GateResult(
        "pg_dump", f"took {plan.output} ({result.size_bytes:,} bytes, verified)", str(plan.output)
    )


def _neon_branch(conn: psycopg.Connection[Any]) -> GateResult:
    name = backup_branch_name()
    started = time.monotonic()
    with NeonApi(NeonSettings.from_env()) as api:
        created = NeonBranches(api).create(name)
    row = conn.execute(VERSION_SQL).fetchone()
    record_backup(
        conn,
        BackupRecord(
            file=f"neon branch {created.branch.name} ({created.branch.id})",
            machine=socket.gethostname(),
            format="neon_branch",
            schema_only=False,
            size_bytes=0,
            duration_seconds=time.monotonic() - started,
            tables=0,
            tool_version=__version__,
            server_version=str(row[0]) if row else "",
            verified=True,  # Neon made it from the branch's history: a full copy
        ),
    )
    return GateResult("neon", f"made Neon branch {created.branch.name}", created.branch.name)
