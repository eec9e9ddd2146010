"""The statements that cost the most, from ``pg_stat_statements`` (or how to enable it).

The top statements by total execution time (where the server spends its time) and by mean
time (what a user waits for) are reported as info; a statement whose mean time is over the
slow threshold, over enough calls to be a habit rather than a one-off, is a warning. Only
the current database's statements count: the view is server-wide.

Without the extension there is one info finding saying how to enable it: ``CREATE
EXTENSION`` when the server has it (Neon does), plus ``shared_preload_libraries`` and a
restart when the library is not loaded, or the contrib package when it is missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg import errors

from pgrunbook.discover.check import Check, CheckResult
from pgrunbook.discover.context import Context
from pgrunbook.findings import Finding, Severity
from pgrunbook.pgss import (
    ENABLE_SQL,
    EXTENSION,
    StatementRow,
    statements_available,
    stats_reset,
    top_statements,
)


@dataclass(frozen=True)
class Thresholds:
    top: int = 5  # statements listed by total time, and as many by mean time
    slow_mean_ms: float = 500.0  # a mean execution time over this is a warning ...
    slow_min_calls: int = 5  # ... for a statement run at least this many times
    max_slow: int = 20  # at most this many slow statements are reported
    query_chars: int = 200  # query text kept in the finding


def _database(ctx: Context) -> str:
    return f"database {ctx.server.database.name}"


def _enable_finding(ctx: Context, reason: str) -> Finding:
    ext = ctx.server.extension(EXTENSION)
    return Finding(
        check=CHECK.id,
        severity=Severity.INFO,
        object=_database(ctx),
        message=reason,
        details={
            "available": ext.available,
            "installed": ext.installed,
            "preloaded": ext.preloaded,
            "neon": ctx.server.neon,
        },
        fix=ENABLE_SQL if ext.available and not ext.installed else None,
    )


def _ranks(rows: list[StatementRow]) -> dict[int, int]:
    return {row.queryid: rank for rank, row in enumerate(rows, start=1)}


def _finding(
    row: StatementRow, by_total: int | None, by_mean: int | None, limits: Thresholds
) -> Finding:
    slow = row.mean_ms >= limits.slow_mean_ms and row.calls >= limits.slow_min_calls
    places = []
    if by_total is not None:
        places.append(f"#{by_total} by total time")
    if by_mean is not None:
        places.append(f"#{by_mean} by mean time")
    figures = f"{row.total_ms:,.0f} ms in {row.calls:,} calls, mean {row.mean_ms:,.1f} ms"
    if slow:
        message = (
            f"slow: mean {row.mean_ms:,.0f} ms over {row.calls:,} calls, over the "
            f"{limits.slow_mean_ms:,.0f} ms threshold ({figures})"
        )
    else:
        message = f"{' and '.join(places)}: {figures}"
    return Finding(
        check=CHECK.id,
        severity=Severity.WARNING if slow else Severity.INFO,
        object=f"query {row.queryid}",
        message=f"{message}: {row.query[:80]}",
        details={
            **row.to_json(),
            "rank_by_total": by_total,
            "rank_by_mean": by_mean,
            "slow_mean_ms": limits.slow_mean_ms,
            "slow_min_calls": limits.slow_min_calls,
        },
        fix=None,
    )


def run(ctx: Context, limits: Thresholds) -> CheckResult:
    reason = statements_available(ctx.server)
    schema = ctx.extension_schema(EXTENSION)
    if reason is not None or schema is None:
        reason = reason or f"{EXTENSION} is not installed in this database: run {ENABLE_SQL}"
        return CheckResult([_enable_finding(ctx, reason)], {"available": False, "reason": reason})
    version = ctx.server.extension(EXTENSION).installed_version
    try:
        # a savepoint: discovery runs in one transaction, which the error must not abort
        with ctx.conn.transaction():
            by_total = top_statements(
                ctx.conn,
                schema,
                "total",
                limits.top,
                query_chars=limits.query_chars,
                version=version,
            )
            by_mean = top_statements(
                ctx.conn,
                schema,
                "mean",
                limits.top,
                query_chars=limits.query_chars,
                version=version,
            )
            slow = top_statements(
                ctx.conn,
                schema,
                "mean",
                limits.max_slow,
                min_calls=limits.slow_min_calls,
                min_mean_ms=limits.slow_mean_ms,
                query_chars=limits.query_chars,
                version=version,
            )
            since = stats_reset(ctx.conn, schema, version)
    except errors.ObjectNotInPrerequisiteState:
        reason = (
            f"{EXTENSION} is installed in this database but its library is not loaded: add "
            "it to shared_preload_libraries and restart the server"
        )
        return CheckResult([_enable_finding(ctx, reason)], {"available": False, "reason": reason})
    total_rank, mean_rank = _ranks(by_total), _ranks(by_mean)
    chosen: dict[int, StatementRow] = {}
    for row in (*by_total, *by_mean, *slow):
        chosen.setdefault(row.queryid, row)
    findings = [
        _finding(row, total_rank.get(qid), mean_rank.get(qid), limits)
        for qid, row in chosen.items()
    ]
    role = ctx.server.role
    facts: dict[str, Any] = {
        "available": True,
        "stats_reset": since,
        "all_roles_visible": role.superuser or role.pg_read_all_stats,
        "top_by_total": [row.to_json() for row in by_total],
        "top_by_mean": [row.to_json() for row in by_mean],
    }
    return CheckResult(findings, facts)


CHECK = Check(
    id="statements",
    title="Top queries from pg_stat_statements",
    run=run,
    thresholds=Thresholds(),
)
