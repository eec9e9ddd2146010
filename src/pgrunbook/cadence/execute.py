"""Running one cadence's tasks on a database and collecting the report (the tasks that
change something live here; the read-only reports in ``readonly``).

The tasks run one after another on one autocommit session (VACUUM and ANALYZE cannot run
in a transaction); the report tasks read discovery's checks, run once on discovery's own
read-only session. A task that fails (a lock not free within its budget, a statement
cancelled, a privilege missing) is reported as failed and the next one runs; Ctrl-C marks
the task in flight interrupted and stops. Every real run ends by recording a size snapshot
(``pgrunbook.history``), the history the quarterly review measures growth from.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

import psycopg
from psycopg import errors, sql

from pgrunbook import history
from pgrunbook.cadence import readonly
from pgrunbook.cadence.report import Grid, RunReport, TaskResult
from pgrunbook.cadence.tasks import (
    AnalyzeTask,
    Cadence,
    CleanupTask,
    FindingsTask,
    GrowthTask,
    Task,
    VacuumTask,
    checks_needed,
    plan,
)
from pgrunbook.catalog import load_catalog
from pgrunbook.cleanup import CleanupResult, dry_run, run_cleanup
from pgrunbook.cleanup.batches import DEFAULT_BATCH_SIZE
from pgrunbook.connect import connect
from pgrunbook.discover import DiscoveryReport, discover
from pgrunbook.dsn import ConnInfo, scrub
from pgrunbook.errors import ConfigError, PgRunbookError
from pgrunbook.locking import LockPolicy, with_lock_retries
from pgrunbook.maintain.run import maintain, table_stats, vacuum_sql
from pgrunbook.profile import Profile
from pgrunbook.report.units import count, size

SOURCE: Final = "pgrunbook run"  # the snapshots' source (pg_cron jobs record "pg_cron")

DATABASE_SQL: Final = "SELECT current_database()::text, to_regnamespace(%(schema)s) IS NOT NULL"
ANALYZE_SQL: Final = sql.SQL("ANALYZE {}")
# ANALYZE takes SHARE UPDATE EXCLUSIVE: wait at most 1 s per try so it never queues the
# app behind DDL; retried for up to 2 minutes.
ANALYZE_LOCKS: Final = LockPolicy(
    lock_timeout_ms=1_000, statement_timeout_ms=600_000, budget_seconds=120.0
)

TaskError = (
    PgRunbookError,
    errors.QueryCanceled,
    errors.LockNotAvailable,
    errors.InsufficientPrivilege,
)


def _reason(exc: Exception) -> str:
    if isinstance(exc, PgRunbookError):
        return exc.one_line()
    lines = str(exc).strip().splitlines()
    return scrub(lines[0] if lines else type(exc).__name__)


class _Runner:
    """Runs the tasks of one report; holds the session and discovery's report."""

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        info: ConnInfo,
        schema: str,
        profile: Profile,
        *,
        dry_run: bool,
        batch_size: int,
        plan_limit_bytes: int | None,
        checks: tuple[str, ...],
        now: datetime,
        log: Callable[[str], None],
    ) -> None:
        self.conn, self.info, self.schema, self.profile = conn, info, schema, profile
        self.dry_run, self.batch_size, self.plan_limit_bytes = dry_run, batch_size, plan_limit_bytes
        self.checks, self.now, self.log = checks, now, log
        self._discovery: DiscoveryReport | None = None

    def discovery(self) -> DiscoveryReport:
        if self._discovery is None:
            self._discovery = discover(
                self.info,
                schema=self.schema,
                only=self.checks,
                plan_limit_bytes=self.plan_limit_bytes,
                profile=self.profile,
            )
        return self._discovery

    def run(self, task: Task) -> TaskResult:
        result = TaskResult(task.id, task.title, task.runbook)
        started = time.perf_counter()
        try:
            if isinstance(task, CleanupTask):
                self.cleanup(task, result)
            elif isinstance(task, AnalyzeTask):
                self.analyze(task, result)
            elif isinstance(task, VacuumTask):
                self.vacuum(task, result)
            elif isinstance(task, FindingsTask):
                readonly.findings(self.discovery(), task, result)
            elif isinstance(task, GrowthTask):
                readonly.growth(self.conn, self.discovery(), self.now, result)
            else:
                readonly.retention(self.conn, task, self.batch_size, result)
        except KeyboardInterrupt:
            result.status, result.error = "interrupted", "interrupted (Ctrl-C)"
        except TaskError as exc:
            result.status, result.error = "failed", _reason(exc)
        result.seconds = time.perf_counter() - started
        return result

    # -- daily / weekly: retention cleanup ---------------------------------------------
    def cleanup(self, task: CleanupTask, result: TaskResult) -> None:
        result.notes += [f"skipped {s.policy}: {s.reason}" for s in task.skipped]
        skipped = [{"policy": s.policy, "reason": s.reason} for s in task.skipped]
        plans = [dry_run(self.conn, p, self.batch_size) for p in task.policies]
        result.sql = [p.sql for p in plans]
        if not task.policies:
            result.summary = f"no retention policy with cadence {task.cadence} applies here"
        if self.dry_run:
            result.status = "dry_run"
            result.grid = Grid(
                ("policy", "table", "would delete", "oldest", "newest"),
                tuple(
                    (
                        p.policy,
                        p.table,
                        count(p.rows),
                        readonly.when(p.oldest),
                        readonly.when(p.newest),
                    )
                    for p in plans
                ),
            )
            result.details = {"policies": [p.to_json() for p in plans], "skipped": skipped}
            if plans:
                each = ", ".join(f"{p.policy} {p.rows:,}" for p in plans)
                result.summary = f"would delete {sum(p.rows for p in plans):,} rows ({each})"
            return
        done: list[CleanupResult] = []
        for policy in task.policies:
            self.log(f"cleanup {policy.name}: deleting in batches of {self.batch_size:,}")
            outcome = run_cleanup(self.conn, policy, batch_size=self.batch_size)
            done.append(outcome)
            if outcome.interrupted:
                result.status = "interrupted"
                result.error = (
                    f"interrupted in policy {outcome.policy} after {outcome.deleted:,} rows "
                    "(whole batches only; run again to finish)"
                )
                break
        result.grid = Grid(
            ("policy", "table", "deleted", "batches", "seconds"),
            tuple(
                (r.policy, r.table, count(r.deleted), str(r.batches), f"{r.seconds:.1f}")
                for r in done
            ),
        )
        result.details = {
            "policies": [{**r.to_json(), "sql": p.sql} for r, p in zip(done, plans, strict=False)],
            "skipped": skipped,
        }
        if done:
            each = ", ".join(f"{r.policy} {r.deleted:,}" for r in done)
            result.summary = f"deleted {sum(r.deleted for r in done):,} rows ({each})"

    # -- weekly: ANALYZE ---------------------------------------------------------------
    def analyze(self, task: AnalyzeTask, result: TaskResult) -> None:
        statements = [ANALYZE_SQL.format(sql.Identifier(t.schema, t.name)) for t in task.tables]
        result.sql = [s.as_string() for s in statements]
        if self.dry_run:
            result.status = "dry_run"
            result.grid = Grid(
                ("table", "last analyzed"),
                tuple(
                    (t.qualified, readonly.when(t.last_analyze or t.last_autoanalyze))
                    for t in task.tables
                ),
            )
            result.details = {"tables": [{"table": t.qualified} for t in task.tables]}
            result.summary = f"would analyze {len(task.tables)} tables, one at a time"
            return
        rows: list[dict[str, Any]] = []
        for table, statement in zip(task.tables, statements, strict=True):
            t0 = time.perf_counter()
            with_lock_retries(
                self.conn,
                lambda s=statement: self.conn.execute(s),  # type: ignore[misc]
                ANALYZE_LOCKS,
                what=f"analyzing {table.qualified}",
            )
            rows.append({"table": table.qualified, "seconds": round(time.perf_counter() - t0, 3)})
        result.grid = Grid(
            ("table", "seconds"), tuple((r["table"], f"{r['seconds']:.2f}") for r in rows)
        )
        result.details = {"tables": rows}
        total = sum(r["seconds"] for r in rows)
        result.summary = f"analyzed {len(rows)} tables in {total:.1f} s"

    # -- monthly: VACUUM (ANALYZE) of the high-traffic tables ------------------------------
    def vacuum(self, task: VacuumTask, result: TaskResult) -> None:
        tables = task.choice.tables
        result.notes += [f"no {name} table in schema {self.schema}" for name in task.missing]
        result.sql = [vacuum_sql(t) for t in tables]
        if self.dry_run:
            result.status = "dry_run"
            stats = [table_stats(self.conn, t.oid) for t in tables]
            result.grid = Grid(
                ("table", "dead tuples", "live tuples", "size"),
                tuple(
                    (t.qualified, count(s.dead_tuples), count(s.live_tuples), size(s.table_bytes))
                    for t, s in zip(tables, stats, strict=True)
                ),
            )
            result.details = {
                "tables": [
                    {**t.to_json(), "sql": vacuum_sql(t), "before": vars(s)}
                    for t, s in zip(tables, stats, strict=True)
                ]
            }
            dead = sum(s.dead_tuples for s in stats)
            result.summary = f"would vacuum {len(tables)} tables ({dead:,} dead tuples now)"
            return
        done = maintain(self.conn, task.choice, on_start=self.log)
        result.grid = Grid(
            ("table", "dead before", "dead after", "size before", "size after", "seconds"),
            tuple(
                (
                    r.table.qualified,
                    count(r.before.dead_tuples),
                    count(r.after.dead_tuples),
                    size(r.before.table_bytes),
                    size(r.after.table_bytes),
                    f"{r.seconds:.1f}",
                )
                for r in done.tables
            ),
        )
        result.details = {"tables": [r.to_json() for r in done.tables]}
        before = sum(r.before.dead_tuples for r in done.tables)
        after = sum(r.after.dead_tuples for r in done.tables)
        result.summary = (
            f"vacuumed {len(done.tables)} tables: {before:,} dead tuples before, {after:,} after"
        )


def run_cadence(
    info: ConnInfo,
    cadence: Cadence,
    profile: Profile,
    *,
    schema: str | None = None,
    dry_run: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    plan_limit_bytes: int | None = None,
    now: datetime | None = None,
    on_task: Callable[[str], None] = lambda title: None,
    log: Callable[[str], None] = lambda text: None,
) -> RunReport:
    """Run ``cadence``'s tasks on ``info`` (a direct session) and return the report.

    ``dry_run`` changes nothing: the cleanup counts what it would delete, VACUUM and
    ANALYZE are listed, the reports still run (they only read), and no snapshot is taken.
    """
    if batch_size < 1:
        raise ConfigError("--batch-size must be at least 1")
    started = time.perf_counter()
    schema = schema or info.schema
    moment = now or datetime.now(UTC)
    with connect(info, autocommit=True) as conn:
        row = conn.execute(DATABASE_SQL, {"schema": schema}).fetchone()
        assert row is not None
        database, exists = str(row[0]), bool(row[1])
        if not exists:
            raise ConfigError(
                f"schema {schema!r} does not exist in database {database!r}",
                "pass --schema, or ?schema= in the URL, naming an existing schema",
            )
        tasks = plan(load_catalog(conn, schema), profile, cadence)
        report = RunReport(cadence.value, database, info.display(), schema, moment, dry_run)
        runner = _Runner(
            conn,
            info,
            schema,
            profile,
            dry_run=dry_run,
            batch_size=batch_size,
            plan_limit_bytes=plan_limit_bytes,
            checks=checks_needed(tasks),
            now=moment,
            log=log,
        )
        stopped = False
        for task in tasks:
            if stopped:
                report.tasks.append(
                    TaskResult(
                        task.id,
                        task.title,
                        task.runbook,
                        status="not_run",
                        summary="not run: an earlier task was interrupted",
                    )
                )
                continue
            on_task(task.title)
            result = runner.run(task)
            report.tasks.append(result)
            stopped = result.status == "interrupted"
        if not dry_run and not stopped:
            history.record(conn, schema, cadence.value, SOURCE)
            report.snapshot_recorded = True
    report.seconds = time.perf_counter() - started
    return report
