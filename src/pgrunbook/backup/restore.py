"""``pgrunbook restore``: an archive into a target database with the real pg_restore.

``--no-owner --no-acl`` by default: Neon's roles are not the source's, and a restore that
tries to ``ALTER OWNER`` to a role that does not exist fails. A target that already holds
tables in the archive's schemas is refused (restoring on top mixes two databases) unless the
caller asks for ``--clean --if-exists``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import psycopg

from pgrunbook.backup.archive import ArchiveToc, read_toc
from pgrunbook.backup.invocation import Invocation, conninfo_without_password
from pgrunbook.backup.tools import ClientTool, ToolVersionError, find_tool
from pgrunbook.backup.verify import source_tables
from pgrunbook.dsn import ConnInfo
from pgrunbook.errors import PgRunbookError, TargetNotEmptyError

EXISTING_SQL: Final = """
SELECT n.nspname || '.' || c.relname
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY(%(schemas)s)
 ORDER BY 1
"""
_ERRORS_IGNORED = "errors ignored on restore:"


class RestoreFailedError(PgRunbookError):
    """pg_restore ran and reported errors."""

    exit_code = 1


@dataclass(frozen=True)
class RestoreOptions:
    clean: bool = False
    owner: bool = False
    acl: bool = False
    single_transaction: bool = False
    pg_bin: Path | None = None


@dataclass(frozen=True)
class RestorePlan:
    file: Path
    toc: ArchiveToc
    pg_restore: ClientTool
    invocation: Invocation
    target: ConnInfo
    clean: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "file": str(self.file),
            "target": self.target.display(),
            "schemas": self.toc.schemas,
            "clean": self.clean,
            "pg_restore": {"path": str(self.pg_restore.path), "version": self.pg_restore.version},
            "command": self.invocation.display(),
        }


@dataclass(frozen=True)
class RestoredTable:
    schema: str
    name: str
    estimated_rows: int | None

    def to_json(self) -> dict[str, Any]:
        return {"schema": self.schema, "name": self.name, "estimated_rows": self.estimated_rows}


@dataclass(frozen=True)
class RestoreResult:
    plan: RestorePlan
    duration_seconds: float
    tables: tuple[RestoredTable, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            **self.plan.to_json(),
            "duration_seconds": round(self.duration_seconds, 3),
            "tables": [t.to_json() for t in self.tables],
            "estimated_rows": sum(t.estimated_rows or 0 for t in self.tables),
        }


def pg_restore_argv(
    tool: ClientTool, file: Path, target: ConnInfo, options: RestoreOptions
) -> list[str]:
    argv = [str(tool.path)]
    if not options.owner:
        argv.append("--no-owner")
    if not options.acl:
        argv.append("--no-acl")
    if options.clean:
        argv += ["--clean", "--if-exists"]
    if options.single_transaction:
        argv.append("--single-transaction")
    return [
        *argv,
        "--no-password",
        f"--dbname={conninfo_without_password(target, 'pg_restore')}",
        str(file),
    ]


def plan_restore(file: Path, target: ConnInfo, options: RestoreOptions) -> RestorePlan:
    """Read the archive's table of contents and build the command; connect to nothing."""
    newest = find_tool(
        "pg_restore", 1, pg_bin=options.pg_bin, why="to read the archive", newest=True
    )
    toc = read_toc(newest, file)
    dumped_by = toc.dumped_by_major or newest.major
    if dumped_by > newest.major:
        raise ToolVersionError(
            f"{file} was written by pg_dump {dumped_by} and the newest pg_restore found is "
            f"{newest.describe()}",
            f"use a pg_restore {dumped_by} or newer (--pg-bin DIR)",
        )
    # The same major as the pg_dump that wrote it, when there is one (see tools.py).
    tool = find_tool(
        "pg_restore", dumped_by, pg_bin=options.pg_bin, why=f"{file} is from pg_dump {dumped_by}"
    )
    argv = pg_restore_argv(tool, file, target, options)
    return RestorePlan(file, toc, tool, Invocation(argv, target.password), target, options.clean)


def existing_tables(conn: psycopg.Connection[Any], schemas: list[str]) -> list[str]:
    """Tables the target already holds in the schemas the archive restores."""
    return [str(r[0]) for r in conn.execute(EXISTING_SQL, {"schemas": schemas}).fetchall()]


def refuse_non_empty(plan: RestorePlan, existing: list[str]) -> None:
    if existing and not plan.clean:
        shown = ", ".join(existing[:3]) + (", ..." if len(existing) > 3 else "")
        raise TargetNotEmptyError(
            f"{plan.target.display()} already holds {len(existing)} table(s) in "
            f"{', '.join(plan.toc.schemas)} ({shown}); restoring on top would mix two databases",
            "restore into an empty database, or pass --clean --yes to drop and replace the "
            "archive's objects",
        )


def run_restore(conn: psycopg.Connection[Any], plan: RestorePlan) -> RestoreResult:
    """Run pg_restore into the target; RestoreFailedError with its first error line."""
    started = time.monotonic()
    done = plan.invocation.run()
    duration = time.monotonic() - started
    if done.returncode != 0:
        ignored = [line for line in done.stderr.splitlines() if _ERRORS_IGNORED in line]
        count = ignored[0].split(_ERRORS_IGNORED)[1].strip() if ignored else "some"
        raise RestoreFailedError(
            f"pg_restore reported {count} error(s) restoring {plan.file} into "
            f"{plan.target.display()}: {plan.invocation.first_error(done.stderr)}",
            "the target may hold a partial restore: fix the cause and run again with "
            "--clean --yes, or use --single-transaction for all or nothing",
        )
    wanted = set(plan.toc.tables)
    tables = tuple(
        RestoredTable(t.schema, t.name, t.estimated_rows)
        for t in source_tables(conn)
        if (t.schema, t.name) in wanted
    )
    return RestoreResult(plan, duration, tables)
