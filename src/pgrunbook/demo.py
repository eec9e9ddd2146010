"""The demo: an embedded PostgreSQL with the reference data, then the runbook on it.

``run_demo`` seeds a fresh ``ali_demo`` database, runs discovery (script 01), explains the
catalog's room-history query for the hot room (``pgrunbook explain``), applies scripts
02-05, fixes the rows the seed made violate the constraints, applies script 06, verifies
everything (section 5) and explains the query again for the same room, compared as
``pgrunbook explain --compare`` does; it ends with a cleanup dry run (what ``pgrunbook
cleanup`` would delete, per retention policy) and the monthly maintenance (``pgrunbook run
monthly``, for real: the database is a throwaway).

Re-running starts from a fresh database: the old one is dropped, and with it the
application roles (roles belong to the whole server, and those of the old database would
make the roles step keep them without new passwords).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import psycopg
from psycopg import errors, sql

from pgrunbook.cadence import Cadence, RunReport, run_cadence
from pgrunbook.catalog import load_catalog
from pgrunbook.change.engine import (
    ApplyReport,
    apply_steps,
    fix_and_apply_constraints,
    open_context,
    verify_steps,
)
from pgrunbook.change.step import StepContext, StepOptions, Verification
from pgrunbook.change.steps import STEPS
from pgrunbook.change.steps import constraints as constraints_step
from pgrunbook.change.steps.constraints.fix import FixResult
from pgrunbook.change.steps.indexes import ROOM_HISTORY_INDEX
from pgrunbook.change.steps.roles import write_env_file
from pgrunbook.cleanup import DryRun, PolicySkip, dry_run, resolve_policies
from pgrunbook.cleanup.batches import DEFAULT_BATCH_SIZE
from pgrunbook.connect import connect
from pgrunbook.discover import DiscoveryReport, discover
from pgrunbook.dsn import ConnInfo
from pgrunbook.embedded import LocalServer
from pgrunbook.errors import EmbeddedServerError, PgRunbookError
from pgrunbook.explain import QueryComparison, QueryResult, explain_queries
from pgrunbook.explain.baseline import BaselineEntry
from pgrunbook.explain.run import VARIANTS
from pgrunbook.explainplan import shape
from pgrunbook.profile import Profile, load_profile
from pgrunbook.profile.model import QuerySpec
from pgrunbook.reference.model import ALI_SCHEMA
from pgrunbook.reference.naming import Naming
from pgrunbook.seed import SeedReport, seed, verify_counts
from pgrunbook.seed.load import Progress

DEMO_DATABASE: Final = "ali_demo"
DEMO_EXTENSIONS: Final = ("pg_stat_statements", "pgstattuple")
# in the server's data directory: written with mode 0600, replaced by every run
PASSWORDS_FILE: Final = "pgrunbook-demo-passwords.env"
EXPLAIN_RUNS: Final = 3  # the median of three runs, before and after
HOT: Final = VARIANTS[0]  # the demo explains the room-history query for the busiest room

DROP_DATABASE_SQL: Final = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
CREATE_DATABASE_SQL: Final = sql.SQL("CREATE DATABASE {}")
DROP_ROLE_SQL: Final = sql.SQL("DROP ROLE IF EXISTS {}")

_TABLE_SIZES: Final = sql.SQL(
    "SELECT c.relname, c.reltuples::bigint, pg_total_relation_size(c.oid), "
    "coalesce(s.n_dead_tup, 0) FROM pg_class c "
    "JOIN pg_namespace n ON n.oid = c.relnamespace "
    "LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid "
    "WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY pg_total_relation_size(c.oid) DESC"
)

# What the runbook does next, in its order (section 3), with the pgrunbook command for each.
NEXT_STEPS: Final = (
    ("section 1", "pgrunbook preflight", "before starting: load, long transactions, backup"),
    ("section 1", "pgrunbook rehearse", "apply and verify on a Neon branch or a copy first"),
    ("section 2", "pgrunbook backup", "pg_dump -Fc -b, verified and recorded"),
    ("section 2", "pgrunbook branch create", "a Neon branch as the backup (Neon API)"),
    ("01 discovery", "pgrunbook discover", "find dead tuples, unused/duplicate indexes, orphans"),
    ("02 indexes", "pgrunbook apply indexes", "15 indexes, CREATE INDEX CONCURRENTLY"),
    ("03 triggers", "pgrunbook apply triggers", "trg_<table>_updated_at on every updatedAt"),
    ("04 audit log", "pgrunbook apply audit", "AuditLog table and audit_log() function"),
    ("05 roles", "pgrunbook apply roles", "app_user, app_readonly, app_admin"),
    ("06 constraints", "pgrunbook apply constraints", "12 CHECK constraints, NOT VALID first"),
    ("07 maintenance", "pgrunbook maintain", "VACUUM (ANALYZE), REINDEX CONCURRENTLY"),
    ("08 cleanup", "pgrunbook cleanup", "expired tokens, old read notifications (dry run)"),
    ("09 monitoring", "pgrunbook monitor", "connections, locks, cache hit ratios"),
    ("10 EXPLAIN", "pgrunbook explain", "prove the speedup of the critical queries"),
    ("section 8", "pgrunbook run monthly", "the schedule: daily, weekly, monthly, quarterly"),
    ("section 8", "pgrunbook schedule install", "pg_cron jobs (or crontab lines) for it"),
)


@dataclass(frozen=True)
class RoomHistory:
    """The room-history query for the hot room, before the indexes and after apply."""

    before: QueryResult
    after: QueryResult

    @property
    def comparison(self) -> QueryComparison:
        """As ``pgrunbook explain --compare`` pairs a baseline's entry with a new result."""
        b = self.before
        entry = BaselineEntry(b.name, b.variant, b.expected_index, dict(b.binding.values),
                              b.summary)  # fmt: skip
        return QueryComparison(entry, self.after)

    def to_json(self) -> dict[str, Any]:
        """``--compare``'s JSON, with the SQL, the parameter values and where they came
        from, and the plans' short shapes."""
        return {
            **self.comparison.to_json(),
            "sql": self.after.summary.query,
            "params": dict(self.before.binding.values),
            "param_notes": dict(self.before.binding.notes),
            "before_shape": shape(self.before.summary),
            "after_shape": shape(self.after.summary),
            "runs": EXPLAIN_RUNS,
        }


@dataclass
class TableSummary:
    name: str
    rows: int
    bytes: int
    dead_tuples: int


@dataclass
class DemoResult:
    dsn: ConnInfo
    server_version: str
    seed: SeedReport
    tables: list[TableSummary] = field(default_factory=list)
    defects: dict[str, int] = field(default_factory=dict)
    discovery: DiscoveryReport | None = None
    apply: ApplyReport | None = None  # scripts 02-06, the constraints after the fixes
    fixes: list[FixResult] = field(default_factory=list)
    checks: list[Verification] = field(default_factory=list)
    explain: RoomHistory | None = None  # the room-history query (hot room) before and after
    passwords_file: Path | None = None  # where the roles' passwords were written (0600)
    roles_created: list[str] = field(default_factory=list)
    cleanup: list[DryRun] = field(default_factory=list)  # what cleanup would delete
    cleanup_skipped: list[PolicySkip] = field(default_factory=list)
    monthly: RunReport | None = None  # `pgrunbook run monthly`, run for real
    kept: bool = False

    @property
    def verified(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    @property
    def exit_code(self) -> int:
        """1 when a verification failed, the apply refused something (as verify/apply) or
        a monthly task failed (as run)."""
        refused = self.apply.refused if self.apply else 0
        monthly_failed = self.monthly is not None and self.monthly.exit_code != 0
        return 0 if self.verified and not refused and not monthly_failed else 1

    def to_json(self) -> dict[str, Any]:
        return {
            "dsn": self.dsn.display(),
            "server_version": self.server_version,
            "kept_running": self.kept,
            "seed": self.seed.to_json(),
            "tables": [t.__dict__ for t in self.tables],
            "defects_found_by_sql": self.defects,
            "discovery": self.discovery.to_json() if self.discovery else None,
            "apply": self.apply.to_json() if self.apply else None,
            "fixes": [f.to_json() for f in self.fixes],
            "verify": {"checks": [c.to_json() for c in self.checks], "passed": self.verified},
            "explain": self.explain.to_json() if self.explain else None,
            "passwords_file": str(self.passwords_file) if self.passwords_file else None,
            "roles_created": self.roles_created,
            "cleanup_dry_run": {
                "policies": [d.to_json() for d in self.cleanup],
                "skipped": [{"policy": k.policy, "reason": k.reason} for k in self.cleanup_skipped],
            },
            "monthly": self.monthly.to_json() if self.monthly else None,
            "next_steps": [{"script": s, "command": c, "what": w} for s, c, w in NEXT_STEPS],
        }


def drop_roles(conn: psycopg.Connection[Any], profile: Profile) -> None:
    """Drop the profile's application roles, after the demo database they were made for.

    On the demo's own server only the demo creates them; what they held lived in the
    dropped database. A role still holding something elsewhere (someone used the kept
    server) is not the demo's to clean up: say so.
    """
    for role in profile.roles.names():
        try:
            conn.execute(DROP_ROLE_SQL.format(sql.Identifier(role)))
        except errors.DependentObjectsStillExist as exc:
            detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise EmbeddedServerError(
                f"cannot drop the demo role {role} left by an earlier run: {detail}",
                f"drop what it holds in the other databases (DROP OWNED BY {role}), or use "
                "another --data-dir",
            ) from None


def room_history_spec(profile: Profile) -> QuerySpec:
    """The profile's critical query for ``idx_message_room_created_desc`` (runbook section
    5's room history: ``room_history`` in the built-in profile)."""
    for spec in profile.queries:
        if spec.index == ROOM_HISTORY_INDEX:
            return spec
    raise PgRunbookError(
        f"the profile {profile.source} has no [[queries]] entry for {ROOM_HISTORY_INDEX}",
        "copy the room_history query from a fresh 'pgrunbook profile export'",
    )


def explain_room_history(ctx: StepContext, before: QueryResult | None = None) -> QueryResult:
    """``pgrunbook explain --query room_history`` for the hot room (the room with the most
    messages), the median of ``EXPLAIN_RUNS``; with ``before``, with its parameter values
    (the same room), as ``--compare`` runs a baseline's query again."""
    spec = room_history_spec(ctx.profile)
    pinned = {spec.name: {HOT: before.binding.values}} if before is not None else None
    report = explain_queries(ctx.conn, ctx.schema, [spec], runs=EXPLAIN_RUNS, pinned=pinned)
    for result in report.results:
        if result.variant == HOT:
            return result
    reasons = "; ".join(s.reason for s in report.skipped) or "no hot room"
    raise PgRunbookError(f"the demo database cannot run the room-history query: {reasons}")


def _steps_summary(report: ApplyReport) -> str:
    return ", ".join(f"{run.plan.step} {run.changed}" for run in report.runs)


def run_runbook(
    ctx: StepContext,
    result: DemoResult,
    passwords_file: Path,
    *,
    log: Callable[[str], None] = lambda text: None,
) -> None:
    """Scripts 02-06 on the demo database, with the EXPLAIN before and after and verify."""
    log("explaining the room-history query for the hot room before the indexes (script 10)")
    before = explain_room_history(ctx)
    early = [s for s in STEPS if s is not constraints_step.STEP]
    log(f"applying {', '.join(s.id for s in early)} (runbook scripts 02-05)")
    first = apply_steps(ctx, early)
    kept = first.generated_passwords()
    if kept:
        write_env_file(passwords_file, result.dsn, kept, ctx.profile.roles)
        result.passwords_file = passwords_file
        result.roles_created = sorted(kept)
        log(f"wrote the passwords of {', '.join(sorted(kept))} to {passwords_file} (mode 0600)")
    log("fixing the rows that violate the constraints, then applying them (script 06)")
    result.fixes, last = fix_and_apply_constraints(ctx)
    result.apply = ApplyReport(
        first.runs + last.runs, dry_run=False, seconds=first.seconds + last.seconds
    )
    log(f"applied: {_steps_summary(result.apply)} change(s); verifying (runbook section 5)")
    result.checks = verify_steps(ctx, STEPS)
    log("explaining the room-history query again, for the same room")
    result.explain = RoomHistory(before, explain_room_history(ctx, before))


def run_demo(
    server: LocalServer,
    *,
    scale: str = "small",
    naming: Naming = Naming.PRISMA,
    profile: Profile | None = None,
    progress: Progress | None = None,
    log: Callable[[str], None] = lambda text: None,
) -> DemoResult:
    """Create a fresh demo database on ``server``, seed it, run discovery and the runbook's
    changes (apply, fix, verify, EXPLAIN before and after) and summarise it all.

    The generated role passwords go to ``PASSWORDS_FILE`` in the server's data directory
    (mode 0600); they are never printed nor in the result's JSON.
    """
    profile = profile or load_profile()
    passwords_file = server.data_dir / PASSWORDS_FILE
    admin = server.start()
    passwords_file.unlink(missing_ok=True)  # its roles are dropped below
    with connect(admin, autocommit=True) as conn:
        ident = sql.Identifier(DEMO_DATABASE)
        conn.execute(DROP_DATABASE_SQL.format(ident))
        drop_roles(conn, profile)
        conn.execute(CREATE_DATABASE_SQL.format(ident))
        row = conn.execute("SHOW server_version").fetchone()
        version = str(row[0]) if row else "?"
    info = server.dsn(DEMO_DATABASE)
    with connect(info, autocommit=True) as conn:
        # what a DBA would install: query statistics (preloaded by the embedded server) and
        # pgstattuple, which turns discovery's bloat estimates into measurements
        for extension in DEMO_EXTENSIONS:
            conn.execute(
                sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(sql.Identifier(extension))
            )
    log(f"PostgreSQL {version} running at {info.display()}")
    report = seed(info, scale=scale, naming=naming, progress=progress)
    result = DemoResult(dsn=info, server_version=version, seed=report)
    with connect(info) as conn:
        for name, rows, size, dead in conn.execute(_TABLE_SIZES).fetchall():
            result.tables.append(TableSummary(str(name), int(rows), int(size), int(dead)))  # type: ignore[call-overload]
    result.defects = verify_counts(info, naming)
    log("running discovery (runbook script 01)")
    result.discovery = discover(info)
    assert len(result.tables) == len(ALI_SCHEMA.tables)
    options = StepOptions(passwords_file=passwords_file)
    with open_context(info, profile, options=options) as ctx:
        run_runbook(ctx, result, passwords_file, log=log)
        log("cleanup dry run (runbook script 08): what the retention policies would delete")
        resolved, result.cleanup_skipped = resolve_policies(
            load_catalog(ctx.conn, ctx.schema), profile.retention
        )
        result.cleanup = [dry_run(ctx.conn, p, DEFAULT_BATCH_SIZE) for p in resolved]
    log("running the monthly maintenance (runbook section 8: pgrunbook run monthly)")
    result.monthly = run_cadence(info, Cadence.MONTHLY, profile, log=log)
    return result
