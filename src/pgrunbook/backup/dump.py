"""``pgrunbook backup``: the runbook's section 2 options B and C with the real pg_dump.

A full backup is ``pg_dump -Fc -b`` (custom format, large objects) over the direct
connection, verified afterwards with ``pg_restore --list``; ``schema_only`` writes a plain
SQL schema file. Every backup is recorded in ``pgrunbook.backups``.
"""

from __future__ import annotations

import re
import socket
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import psycopg

from pgrunbook.backup.archive import ArchiveError, read_toc
from pgrunbook.backup.invocation import Invocation, conninfo_without_password
from pgrunbook.backup.record import BACKUPS_TABLE, BackupRecord, record_backup
from pgrunbook.backup.tools import ClientTool, find_tool
from pgrunbook.backup.verify import (
    SourceTable,
    Verification,
    source_tables,
    verify_archive,
    verify_plain,
)
from pgrunbook.dsn import ConnInfo, scrub
from pgrunbook.errors import ConfigError, PgRunbookError

SERVER_SQL: Final = (
    "SELECT current_setting('server_version'), current_setting('server_version_num')::int, "
    "current_database()"
)
DEFAULT_LOCK_WAIT_MS: Final = 30_000
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class BackupFailedError(PgRunbookError):
    """pg_dump ran and failed."""

    exit_code = 1


@dataclass(frozen=True)
class BackupOptions:
    output: Path | None = None
    schema_only: bool = False
    lock_wait_timeout_ms: int = DEFAULT_LOCK_WAIT_MS
    pg_bin: Path | None = None
    directory: Path = Path()


@dataclass(frozen=True)
class BackupPlan:
    """What ``take_backup`` will run: decided (tool, file name) before anything is written."""

    invocation: Invocation
    output: Path
    schema_only: bool
    pg_dump: ClientTool
    server_version: str
    dbname: str

    @property
    def format(self) -> str:
        return "plain" if self.schema_only else "custom"

    def to_json(self) -> dict[str, Any]:
        return {
            "file": str(self.output),
            "format": self.format,
            "schema_only": self.schema_only,
            "database": self.dbname,
            "server_version": self.server_version,
            "pg_dump": {"path": str(self.pg_dump.path), "version": self.pg_dump.version},
            "command": self.invocation.display(),
        }


@dataclass(frozen=True)
class BackupResult:
    plan: BackupPlan
    size_bytes: int
    duration_seconds: float
    verification: Verification
    backup_id: int | None
    record_error: str | None

    @property
    def verified(self) -> bool:
        return self.verification.verified

    def to_json(self) -> dict[str, Any]:
        return {
            **self.plan.to_json(),
            "size_bytes": self.size_bytes,
            "duration_seconds": round(self.duration_seconds, 3),
            "verified": self.verified,
            "verification_problem": self.verification.problem,
            "missing_tables": self.verification.missing,
            "tables": [t.to_json() for t in self.verification.tables],
            "recorded": self.backup_id is not None,
            "backup_id": self.backup_id,
            "record_error": self.record_error,
        }


def default_name(dbname: str, schema_only: bool, now: datetime | None = None) -> str:
    """``<database>_backup_YYYYMMDD_HHMMSS.dump`` (``_schema_`` and ``.sql`` for schema only)."""
    stamp = (now or datetime.now()).strftime("%Y%m%d_%H%M%S")
    safe = _UNSAFE.sub("_", dbname).strip("_.") or "database"
    return f"{safe}_schema_{stamp}.sql" if schema_only else f"{safe}_backup_{stamp}.dump"


def pg_dump_argv(
    tool: ClientTool, info: ConnInfo, output: Path, *, schema_only: bool, lock_wait_ms: int
) -> list[str]:
    """pg_dump's command line: no password (that goes through PGPASSWORD)."""
    argv = [str(tool.path)]
    if schema_only:
        argv += ["--schema-only", "--format=plain"]
    else:
        argv += ["-Fc", "-b", f"--exclude-table-data={'.'.join(BACKUPS_TABLE)}"]
    return [
        *argv,
        f"--lock-wait-timeout={lock_wait_ms}ms",
        "--no-password",
        f"--file={output}",
        f"--dbname={conninfo_without_password(info, 'pg_dump')}",
    ]


def _unused(path: Path) -> Path:
    """``path``, or ``<stem>_2<suffix>``, ... when a backup of the same second is there."""
    n = 1
    candidate = path
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.stem}_{n}{path.suffix}")
    return candidate


def plan_backup(
    conn: psycopg.Connection[Any], info: ConnInfo, options: BackupOptions
) -> BackupPlan:
    """Pick pg_dump for this server and the output file; write nothing."""
    row = conn.execute(SERVER_SQL).fetchone()
    assert row is not None
    version, version_num, dbname = str(row[0]), int(row[1]), str(row[2])
    tool = find_tool(
        "pg_dump",
        version_num // 10000,
        pg_bin=options.pg_bin,
        why=f"the server is PostgreSQL {version}",
    )
    output = options.output or _unused(
        options.directory / default_name(dbname, options.schema_only)
    )
    if output.exists():
        raise ConfigError(f"{output} already exists", "choose another --output or remove it")
    if not output.parent.is_dir():
        raise ConfigError(f"the folder {output.parent} does not exist", "create it first")
    argv = pg_dump_argv(
        tool,
        info,
        output,
        schema_only=options.schema_only,
        lock_wait_ms=options.lock_wait_timeout_ms,
    )
    return BackupPlan(
        invocation=Invocation(argv, info.password),
        output=output,
        schema_only=options.schema_only,
        pg_dump=tool,
        server_version=version,
        dbname=dbname,
    )


def _dump_failed(plan: BackupPlan, stderr: str) -> BackupFailedError:
    first = plan.invocation.first_error(stderr)
    hint = "see the message; nothing was recorded"
    if "lock" in first.lower() or "statement timeout" in first.lower():
        hint = (
            "a session holds a conflicting lock (a DDL or VACUUM FULL); try again when it "
            "is done, or raise --lock-wait-timeout"
        )
    elif "permission denied" in first.lower():
        hint = "pg_dump needs SELECT on every table; back up as the database owner"
    return BackupFailedError(f"pg_dump failed for database {plan.dbname}: {first}", hint)


def take_backup(
    conn: psycopg.Connection[Any], plan: BackupPlan, *, machine: str | None = None
) -> BackupResult:
    """Run pg_dump, verify the file, record it; BackupFailedError when pg_dump fails (the
    partial file is removed)."""
    tables = source_tables(conn)
    started = time.monotonic()
    try:
        done = plan.invocation.run()
    except BaseException:
        plan.output.unlink(missing_ok=True)
        raise
    duration = time.monotonic() - started
    if done.returncode != 0:
        plan.output.unlink(missing_ok=True)
        raise _dump_failed(plan, done.stderr)
    size = plan.output.stat().st_size
    verification = _verify(plan, tables)
    record = BackupRecord(
        file=str(plan.output.resolve()),
        machine=machine or socket.gethostname(),
        format=plan.format,
        schema_only=plan.schema_only,
        size_bytes=size,
        duration_seconds=duration,
        tables=len(verification.tables),
        tool_version=plan.pg_dump.version,
        server_version=plan.server_version,
        verified=verification.verified,
    )
    backup_id, record_error = None, None
    try:
        backup_id = record_backup(conn, record)
    except psycopg.Error as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        record_error = scrub(first, plan.invocation.password)
    return BackupResult(plan, size, duration, verification, backup_id, record_error)


def _verify(plan: BackupPlan, tables: list[SourceTable]) -> Verification:
    if plan.schema_only:
        return verify_plain(plan.output, tables)
    pg_restore = plan.pg_dump.sibling("pg_restore") or find_tool(
        "pg_restore",
        plan.pg_dump.major,
        why=f"the archive was written by {plan.pg_dump.describe()}",
    )
    try:
        toc = read_toc(pg_restore, plan.output)
    except ArchiveError as exc:
        return Verification(False, (), exc.message)
    return verify_archive(toc, tables)
