"""Unused and rarely used indexes: candidates for removal, judged against young statistics.

An index costs on every INSERT and UPDATE and in storage; one no query reads is pure cost.
``idx_scan`` counts only since the statistics started collecting (the last reset, or the
server start: a Neon compute restart loses them), so an index unused for two hours is no
evidence: below a minimum observation window the verdict is "insufficient evidence".

Indexes that enforce something are never candidates: primary keys, unique and exclusion
constraints, and unique indexes without a constraint (Prisma's ``@unique`` is one).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from pgrunbook.catalog import Catalog, Index, Table
from pgrunbook.discover.check import Check, CheckResult
from pgrunbook.discover.context import Context, StatsWindow
from pgrunbook.findings import Finding, Severity
from pgrunbook.indexsql import drop_sql, recreate_sql

Verdict = Literal["unused", "rarely_used", "insufficient_evidence"]


@dataclass(frozen=True)
class Thresholds:
    # Statistics younger than this prove nothing: the verdict becomes insufficient_evidence.
    min_observation_days: float = 7.0
    # "Rarely used": fewer index scans per row written to the table than this...
    max_scans_per_write: float = 0.01
    # ...on a table that has seen at least this many writes (inserts + updates + deletes).
    min_writes: int = 10_000


def writes(table: Table) -> int:
    return (table.n_tup_ins or 0) + (table.n_tup_upd or 0) + (table.n_tup_del or 0)


def candidate(index: Index, table: Table) -> bool:
    """An index that enforces nothing, is valid and has statistics of its own."""
    return (
        index.valid
        and not index.backs_constraint
        and not index.is_unique
        and index.idx_scan is not None
        and table.kind == "r"
        and not table.is_partition  # a partition's index usually belongs to its parent's
    )


def verdict(index: Index, table: Table, stats: StatsWindow, limits: Thresholds) -> Verdict | None:
    scans, written = index.idx_scan or 0, writes(table)
    if scans == 0:
        found: Verdict = "unused"
    elif written >= limits.min_writes and scans / written < limits.max_scans_per_write:
        found = "rarely_used"
    else:
        return None
    if stats.age < timedelta(days=limits.min_observation_days):
        return "insufficient_evidence"
    return found


def _span(stats: StatsWindow) -> str:
    seconds = stats.age.total_seconds()
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} seconds"


def _message(
    found: Verdict, index: Index, written: int, stats: StatsWindow, limits: Thresholds
) -> str:
    scans = index.idx_scan or 0
    window = _span(stats)
    if found == "insufficient_evidence":
        return (
            f"{scans:,} scans in the {window} the statistics have been collecting: too short "
            f"to judge (minimum {limits.min_observation_days:g} days); check again later"
        )
    if found == "unused":
        return (
            f"never scanned in {window} of statistics while {written:,} rows were written: "
            "every write maintains it for nothing; drop it (details hold the statement that "
            "recreates it)"
        )
    return (
        f"rarely used: {scans:,} scans for {written:,} rows written in {window} of statistics; "
        "consider dropping it (details hold the statement that recreates it)"
    )


def findings(catalog: Catalog, stats: StatsWindow, limits: Thresholds) -> list[Finding]:
    """The verdicts on ``catalog``'s indexes given how long ``stats`` have been counting."""
    out = []
    for table in catalog:
        for index in table.indexes:
            if not candidate(index, table):
                continue
            found = verdict(index, table, stats, limits)
            if found is None:
                continue
            written = writes(table)
            details: dict[str, Any] = {
                "verdict": found,
                "idx_scan": index.idx_scan,
                "bytes": index.bytes,
                "table": table.qualified,
                "table_writes": written,
                "scans_per_write": (index.idx_scan or 0) / written if written else None,
                "statistics": stats.to_json(),
                "min_observation_seconds": round(limits.min_observation_days * 86400),
                "definition": index.definition,
                "drop_sql": drop_sql(index),
                "recreate_sql": recreate_sql(index),
            }
            young = found == "insufficient_evidence"
            out.append(
                Finding(
                    check=CHECK.id,
                    severity=Severity.INFO if young else Severity.WARNING,
                    object=index.qualified,
                    message=_message(found, index, written, stats, limits),
                    details=details,
                    fix=None if young else drop_sql(index),  # no drop on too little evidence
                )
            )
    return out


def run(ctx: Context, limits: Thresholds) -> CheckResult:
    return CheckResult(findings(ctx.catalog, ctx.stats, limits), facts=ctx.stats.to_json())


CHECK = Check(
    id="unused_indexes",
    title="Unused and rarely used indexes",
    run=run,
    thresholds=Thresholds(),
)
