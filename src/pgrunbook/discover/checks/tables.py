"""Tables: size, estimated rows, dead tuples, vacuum and analyze times, primary keys.

The inventory every other check refers to (shown as the report's table list), plus two
findings: tables never analyzed (the planner guesses their row counts) and tables without
a primary key (logical replication, ORMs and row-by-row fixes all need one).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import sql

from pgrunbook.catalog import Table
from pgrunbook.discover.check import Check, CheckResult
from pgrunbook.discover.context import Context
from pgrunbook.findings import Finding, Severity


@dataclass(frozen=True)
class Thresholds:
    # Tables smaller than this are not worth a "never analyzed" warning (info instead).
    never_analyzed_min_rows: int = 1000


def _latest(*times: datetime | None) -> datetime | None:
    return max((t for t in times if t is not None), default=None)


def dead_ratio(table: Table) -> float | None:
    """Dead tuples / (live + dead), from the statistics; None before any are counted."""
    live, dead = table.n_live_tup or 0, table.n_dead_tup or 0
    return dead / (live + dead) if live + dead else None


def inventory(table: Table, now: datetime) -> dict[str, Any]:
    vacuumed = _latest(table.last_vacuum, table.last_autovacuum)
    analyzed = _latest(table.last_analyze, table.last_autoanalyze)
    return {
        "name": table.qualified,
        "kind": "partitioned" if table.kind == "p" else "table",
        "estimated_rows": table.estimated_rows,
        "total_bytes": table.total_bytes,
        "table_bytes": table.table_bytes,
        "index_bytes": table.index_bytes,
        "toast_bytes": table.toast_bytes,
        "live_tuples": table.n_live_tup,
        "dead_tuples": table.n_dead_tup,
        "dead_ratio": dead_ratio(table),
        "last_vacuum": table.last_vacuum,
        "last_autovacuum": table.last_autovacuum,
        "last_analyze": table.last_analyze,
        "last_autoanalyze": table.last_autoanalyze,
        "last_vacuum_age_seconds": (now - vacuumed).total_seconds() if vacuumed else None,
        "last_analyze_age_seconds": (now - analyzed).total_seconds() if analyzed else None,
        "has_primary_key": table.has_primary_key,
    }


def _analyze(table: Table) -> str:
    return sql.SQL("ANALYZE {};").format(sql.Identifier(table.schema, table.name)).as_string()


def run(ctx: Context, limits: Thresholds) -> CheckResult:
    findings = []
    for table in ctx.catalog:
        never = (
            table.last_analyze is None
            and table.last_autoanalyze is None
            and not table.has_statistics
        )
        if never and table.kind == "r":
            rows = max(table.estimated_rows, table.n_live_tup or 0)
            big = rows >= limits.never_analyzed_min_rows
            findings.append(
                Finding(
                    check=CHECK.id,
                    severity=Severity.WARNING if big else Severity.INFO,
                    object=table.qualified,
                    message=f"never analyzed ({rows:,} rows by estimate): the planner is "
                    "guessing its row counts",
                    details={"estimated_rows": rows, "problem": "never_analyzed"},
                    fix=_analyze(table),
                )
            )
        if not table.has_primary_key and not table.is_partition:
            findings.append(
                Finding(
                    check=CHECK.id,
                    severity=Severity.WARNING,
                    object=table.qualified,
                    message="has no primary key: rows cannot be addressed one by one "
                    "(fixes, logical replication, ORMs)",
                    details={"estimated_rows": table.estimated_rows, "problem": "no_primary_key"},
                    fix=None,
                )
            )
    facts = [inventory(t, ctx.stats.now) for t in ctx.catalog]
    return CheckResult(findings, facts)


CHECK = Check(
    id="tables",
    title="Tables: size, rows, vacuum and analyze, primary keys",
    run=run,
    thresholds=Thresholds(),
)
