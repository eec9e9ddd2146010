"""Running the checks against one database and collecting the report."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import psycopg
from psycopg import errors

from pgrunbook.catalog import Catalog, load_catalog
from pgrunbook.config import Config, apply_overrides
from pgrunbook.connect import connect
from pgrunbook.discover.check import Check
from pgrunbook.discover.checks.database_size import NEON_FREE_BYTES
from pgrunbook.discover.context import Context, StatsWindow, stats_window
from pgrunbook.discover.registry import select
from pgrunbook.dsn import ConnInfo
from pgrunbook.errors import ConfigError, PgRunbookError
from pgrunbook.findings import Finding, Severity, exit_code
from pgrunbook.locking import read_only_transaction
from pgrunbook.prisma.mode import PrismaMode
from pgrunbook.profile import Profile, load_profile
from pgrunbook.serverinfo import ServerInfo, probe

# Discovery never writes, and no single catalog or statistics query may run away.
SESSION_STATEMENT_TIMEOUT_MS: Final = 120_000
# Reading sizes takes ACCESS SHARE locks: a table locked exclusively (VACUUM FULL, a long
# ALTER TABLE) must make discovery give up quickly, not hang behind it.
SESSION_LOCK_TIMEOUT_MS: Final = 5_000

Status = Literal["ran", "skipped", "failed"]
# Prisma mode for discovery: decided already, or decided on discovery's own session (the
# database's _prisma_migrations table is one of the reasons), given the connection and the
# schema name: ``lambda conn, schema: detect(conn, schema, cwd, explicit)``.
PrismaDetector = Callable[[psycopg.Connection[Any], str], PrismaMode]


@dataclass
class CheckStatus:
    id: str
    title: str
    status: Status
    reason: str | None = None
    seconds: float = 0.0
    findings: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "status": self.status,
            "reason": self.reason,
            "seconds": round(self.seconds, 3),
            "findings": self.findings,
        }


@dataclass
class DiscoveryReport:
    database: str
    schema: str
    server: ServerInfo
    stats: StatsWindow
    profile: str
    findings: list[Finding] = field(default_factory=list)
    checks: list[CheckStatus] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    prisma: PrismaMode | None = None  # None: not looked for

    def by_check(self, check_id: str) -> list[Finding]:
        return [f for f in self.findings if f.check == check_id]

    def exit_code(self, fail_on: Severity | None) -> int:
        return exit_code(self.findings, fail_on)

    def to_json(self) -> dict[str, Any]:
        return {
            "findings": [f.to_json() for f in self.findings],
            "database": self.database,
            "schema": self.schema,
            "server_version": self.server.version,
            "endpoint": self.server.endpoint,
            "statistics": self.stats.to_json(),
            "profile": self.profile,
            "checks": [c.to_json() for c in self.checks],
            "facts": self.facts,
            "prisma": self.prisma.to_json() if self.prisma is not None else None,
            "seconds": round(self.seconds, 3),
        }


def _skip_reason(check: Check[Any], ctx: Context) -> str | None:
    if ctx.version_num < check.min_server_version:
        need = check.min_server_version // 10000
        return f"needs PostgreSQL {need}+, the server is {ctx.server.major}"
    if check.extension and ctx.extension_schema(check.extension) is None:
        return f"needs the {check.extension} extension, which is not installed"
    return None


def _order(finding: Finding) -> tuple[int, str]:
    return (-finding.severity.rank, finding.object)


def discover(
    info: ConnInfo,
    *,
    schema: str | None = None,
    config: Config | None = None,
    only: tuple[str, ...] = (),
    skip: tuple[str, ...] = (),
    plan_limit_bytes: int | None = None,
    profile: Profile | None = None,
    checks: Sequence[Check[Any]] | None = None,
    lock_timeout_ms: int = SESSION_LOCK_TIMEOUT_MS,
    on_check: Callable[[Check[Any]], None] = lambda check: None,
    prisma: PrismaMode | PrismaDetector | None = None,
) -> DiscoveryReport:
    """Run the selected checks read-only and return every finding, worst first per check.

    ``checks`` replaces the registry's (for checks of your own); ``only``/``skip`` and the
    config file's ``enabled = false`` select among the registry's. ``prisma``: Prisma mode
    (or how to detect it on the session); with a Prisma schema the relation checks use the
    relations it declares instead of inferring them from column names.
    """
    config = config or Config()
    if checks is None:
        checks = [c for c in select(only, skip) if c.id in only or config.enabled(c.id)]
    limits = {
        c.id: apply_overrides(
            c.thresholds, config.check_section(c.id), f"{config.path} [checks.{c.id}]"
        )
        for c in checks
    }
    schema = schema or info.schema
    started = time.perf_counter()
    # One read-only transaction (pooler-safe: nothing left on the session), a savepoint per
    # check.
    with (
        connect(info, autocommit=True) as conn,
        read_only_transaction(
            conn, lock_timeout_ms=lock_timeout_ms, statement_timeout_ms=SESSION_STATEMENT_TIMEOUT_MS
        ),
    ):
        report = _discover(conn, info, schema, checks, limits, plan_limit_bytes, profile,
                           prisma, lock_timeout_ms, on_check)  # fmt: skip
    report.seconds = time.perf_counter() - started
    return report


def _discover(
    conn: psycopg.Connection[Any],
    info: ConnInfo,
    schema: str,
    checks: Sequence[Check[Any]],
    limits: dict[str, Any],
    plan_limit_bytes: int | None,
    profile: Profile | None,
    prisma: PrismaMode | PrismaDetector | None,
    lock_timeout_ms: int,
    on_check: Callable[[Check[Any]], None],
) -> DiscoveryReport:
    server = probe(conn, info=info, schema=schema)
    if not server.schema.exists:
        raise ConfigError(
            f"schema {schema!r} does not exist in database {server.database.name!r}",
            "pass --schema, or ?schema= in the URL, naming an existing schema",
        )
    if plan_limit_bytes is None and server.neon:
        plan_limit_bytes = NEON_FREE_BYTES
    mode = prisma(conn, schema) if callable(prisma) else prisma
    ctx = Context(
        conn=conn,
        schema=schema,
        server=server,
        catalog=_catalog(conn, schema, lock_timeout_ms),
        stats=stats_window(conn),
        profile=profile or load_profile(),
        plan_limit_bytes=plan_limit_bytes,
        prisma=mode,
    )
    report = DiscoveryReport(
        server.database.name, schema, server, ctx.stats, ctx.profile.source, prisma=mode
    )
    if ctx.declarations is not None:
        report.facts["prisma"] = _declared_facts(ctx)
    for check in checks:
        report.checks.append(_run_one(check, limits[check.id], ctx, report, on_check))
    return report


def _declared_facts(ctx: Context) -> dict[str, Any]:
    """How the schema's relations matched the database: counted, and those that did not."""
    declared = ctx.declarations or []
    return {
        "declared_relations": len(declared),
        "in_database": sum(1 for d in declared if d.relation is not None),
        "unmatched": [d.to_json() for d in declared if d.problem is not None],
    }


def _catalog(conn: psycopg.Connection[Any], schema: str, lock_timeout_ms: int) -> Catalog:
    try:
        return load_catalog(conn, schema)
    except errors.LockNotAvailable:
        raise PgRunbookError(
            f"a table in schema {schema!r} is locked exclusively (VACUUM FULL, ALTER TABLE, "
            f"...) and did not free within {lock_timeout_ms} ms",
            "find the session holding it with 'pgrunbook monitor' and try again later",
        ) from None


def _run_one(
    check: Check[Any],
    limits: Any,
    ctx: Context,
    report: DiscoveryReport,
    on_check: Callable[[Check[Any]], None],
) -> CheckStatus:
    status = CheckStatus(check.id, check.title, "skipped")
    status.reason = _skip_reason(check, ctx)
    if status.reason is not None:
        return status
    on_check(check)
    t0 = time.perf_counter()
    try:
        with ctx.conn.transaction():  # a savepoint: a failed check leaves the others running
            result = check.run(ctx, limits)
    except (errors.InsufficientPrivilege, errors.QueryCanceled, errors.LockNotAvailable) as exc:
        status.status, status.reason = "failed", _why(exc)
        return status
    finally:
        status.seconds = time.perf_counter() - t0
    status.status = "ran"
    status.findings = len(result.findings)
    report.findings.extend(sorted(result.findings, key=_order))
    if result.facts is not None:
        report.facts[check.id] = result.facts
    return status


def _why(exc: psycopg.Error) -> str:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, errors.LockNotAvailable):
        return f"a table it reads is locked by another session ({first})"
    if isinstance(exc, errors.QueryCanceled):
        return f"took longer than the statement timeout ({first})"
    return f"not allowed for this role ({first})"
