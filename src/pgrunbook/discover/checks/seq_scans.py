"""Tables read mostly by sequential scans over many rows: a query is missing an index.

``pg_stat_all_tables`` counts sequential scans and the rows they read. A table scanned
sequentially often, over many rows per scan, and seldom through an index, is what a
missing index looks like from the statistics. They do not say which query it is: that
is ``pg_stat_statements`` (the ``statements`` check) and ``pgrunbook explain``.
"""

from __future__ import annotations

from dataclasses import dataclass

from pgrunbook.catalog import Table
from pgrunbook.discover.check import Check, CheckResult
from pgrunbook.discover.context import Context, StatsWindow
from pgrunbook.findings import Finding, Severity


@dataclass(frozen=True)
class Thresholds:
    min_seq_scans: int = 1000  # sequential scans since the statistics started
    min_rows_per_scan: int = 10_000  # seq_tup_read / seq_scan
    max_index_share: float = 0.5  # idx_scan / (idx_scan + seq_scan) below this: "few"


@dataclass(frozen=True)
class Usage:
    seq_scan: int
    seq_tup_read: int
    idx_scan: int

    @property
    def rows_per_scan(self) -> float:
        return self.seq_tup_read / self.seq_scan if self.seq_scan else 0.0

    @property
    def index_share(self) -> float:
        total = self.seq_scan + self.idx_scan
        return self.idx_scan / total if total else 0.0

    def heavy(self, limits: Thresholds) -> bool:
        return (
            self.seq_scan >= limits.min_seq_scans
            and self.rows_per_scan >= limits.min_rows_per_scan
            and self.index_share < limits.max_index_share
        )


def usage(table: Table) -> Usage:
    return Usage(table.seq_scan or 0, table.seq_tup_read or 0, table.idx_scan or 0)


def findings(tables: list[Table], stats: StatsWindow, limits: Thresholds) -> list[Finding]:
    out = []
    for table in tables:
        seen = usage(table)
        if not seen.heavy(limits):
            continue
        out.append(
            Finding(
                check=CHECK.id,
                severity=Severity.WARNING,
                object=table.qualified,
                message=f"{seen.seq_scan:,} sequential scans reading {seen.rows_per_scan:,.0f} "
                f"rows each on average, {seen.index_share:.0%} of scans through an index: a "
                "frequent query filters this table without a usable index; find it in "
                "pg_stat_statements (pgrunbook discover --check statements) and check its plan "
                "with pgrunbook explain",
                details={
                    "seq_scan": seen.seq_scan,
                    "seq_tup_read": seen.seq_tup_read,
                    "idx_scan": seen.idx_scan,
                    "rows_per_scan": seen.rows_per_scan,
                    "index_share": seen.index_share,
                    "estimated_rows": table.estimated_rows,
                    "table_bytes": table.table_bytes,
                    "collecting_seconds": round(stats.age.total_seconds()),
                },
                fix=None,
            )
        )
    return out


def run(ctx: Context, limits: Thresholds) -> CheckResult:
    return CheckResult(findings(ctx.catalog.tables, ctx.stats, limits))


CHECK = Check(
    id="seq_scans",
    title="Tables read by heavy sequential scans",
    run=run,
    thresholds=Thresholds(),
)
