"""Table and index cache hit ratios of the schema (the usual 99% / 95% guidance).

A block found in shared_buffers is a hit; one fetched from the OS (page cache or disk) is a
read. A table hit ratio below 99%, or an index hit ratio below 95%, over a representative
period usually means the working set does not fit in memory. The counters are cumulative
since the statistics were last reset or the server (a Neon compute) restarted, and a cold
cache right after a restart reads everything once: below a minimum number of block
accesses, or a minimum observation window, there is too little evidence to judge and the
check says so in its facts instead of reporting a finding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

from pgrunbook.discover.check import Check, CheckResult
from pgrunbook.discover.context import Context
from pgrunbook.findings import Finding, Severity

TABLES_SQL: Final = """
SELECT s.relname AS name, s.heap_blks_hit AS hits, s.heap_blks_read AS reads
  FROM pg_statio_user_tables s
 WHERE s.schemaname = %(schema)s AND s.heap_blks_hit + s.heap_blks_read > 0
"""

INDEXES_SQL: Final = """
SELECT s.indexrelname AS name, s.idx_blks_hit AS hits, s.idx_blks_read AS reads
  FROM pg_statio_user_indexes s
 WHERE s.schemaname = %(schema)s AND s.idx_blks_hit + s.idx_blks_read > 0
"""

SHARED_BUFFERS_SQL: Final = """
SELECT pg_size_bytes(current_setting('shared_buffers')) AS bytes
"""

TOP_RELATIONS: Final = 5  # the relations with the most reads, shown in a finding's details

Kind = Literal["table", "index"]


@dataclass(frozen=True)
class Thresholds:
    min_table_ratio: float = 0.99
    min_index_ratio: float = 0.95
    min_block_accesses: int = 10_000  # hits + reads, per kind, before a ratio is judged
    min_observation_seconds: int = 3600  # statistics younger than this: a cold cache


@dataclass(frozen=True)
class BlockRow:
    name: str
    hits: int
    reads: int


@dataclass(frozen=True)
class SizeRow:
    bytes: int


@dataclass(frozen=True)
class Ratio:
    kind: Kind
    hits: int
    reads: int
    threshold: float
    top: list[BlockRow]

    @property
    def accesses(self) -> int:
        return self.hits + self.reads

    @property
    def ratio(self) -> float | None:
        return self.hits / self.accesses if self.accesses else None

    def to_json(self) -> dict[str, Any]:
        return {"hits": self.hits, "reads": self.reads, "ratio": self.ratio}


def _ratio(kind: Kind, rows: list[BlockRow], threshold: float, schema: str) -> Ratio:
    top = sorted((r for r in rows if r.reads), key=lambda r: (-r.reads, r.name))[:TOP_RELATIONS]
    return Ratio(
        kind=kind,
        hits=sum(r.hits for r in rows),
        reads=sum(r.reads for r in rows),
        threshold=threshold,
        top=[BlockRow(f"{schema}.{r.name}", r.hits, r.reads) for r in top],
    )


def _pct(ratio: float) -> str:
    return f"{ratio * 100:.4g}%"


def _advice(ctx: Context, shared_buffers: int) -> str:
    if ctx.server.neon:
        return (
            "raise the compute size (Neon's memory and local file cache grow with it: raise "
            "the autoscaling maximum)"
        )
    return f"raise shared_buffers (now {shared_buffers // 2**20:,} MB) or the server's memory"


def _finding(ctx: Context, ratio: Ratio, value: float, advice: str) -> Finding:
    return Finding(
        check=CHECK.id,
        severity=Severity.WARNING,
        object=f"database {ctx.server.database.name}",
        message=f"{ratio.kind} cache hit ratio in schema {ctx.schema} is {value:.2%}, below "
        f"{_pct(ratio.threshold)} ({ratio.reads:,} of {ratio.accesses:,} block accesses missed "
        f"shared_buffers): the working set does not fit in memory; {advice}",
        details={
            "kind": ratio.kind,
            "schema": ctx.schema,
            "hits": ratio.hits,
            "reads": ratio.reads,
            "ratio": value,
            "threshold": ratio.threshold,
            "most_reads": [{"name": r.name, "hits": r.hits, "reads": r.reads} for r in ratio.top],
        },
        fix=None,
    )


def run(ctx: Context, limits: Thresholds) -> CheckResult:
    params = {"schema": ctx.schema}
    tables = ctx.rows(BlockRow, TABLES_SQL, params)
    indexes = ctx.rows(BlockRow, INDEXES_SQL, params)
    ratios = (
        _ratio("table", tables, limits.min_table_ratio, ctx.schema),
        _ratio("index", indexes, limits.min_index_ratio, ctx.schema),
    )
    (buffers,) = ctx.rows(SizeRow, SHARED_BUFFERS_SQL)
    observed = ctx.stats.age.total_seconds()
    facts: dict[str, Any] = {
        "schema": ctx.schema,
        "shared_buffers_bytes": buffers.bytes,
        "collecting_seconds": round(observed),
    }
    findings = []
    for ratio in ratios:
        facts[ratio.kind] = ratio.to_json()
        value = ratio.ratio
        if observed < limits.min_observation_seconds:
            facts[ratio.kind]["verdict"] = (
                f"too little evidence: statistics collected for {observed:,.0f} s, "
                f"fewer than {limits.min_observation_seconds:,} s (the cache may still be cold)"
            )
        elif value is None or ratio.accesses < limits.min_block_accesses:
            facts[ratio.kind]["verdict"] = (
                f"too little evidence: {ratio.accesses:,} block accesses, fewer than "
                f"{limits.min_block_accesses:,}"
            )
        elif value < ratio.threshold:
            facts[ratio.kind]["verdict"] = f"below {_pct(ratio.threshold)}"
            findings.append(_finding(ctx, ratio, value, _advice(ctx, buffers.bytes)))
        else:
            facts[ratio.kind]["verdict"] = f"at or above {_pct(ratio.threshold)}"
    return CheckResult(findings, facts)


CHECK = Check(
    id="cache_hit",
    title="Table and index cache hit ratios",
    run=run,
    thresholds=Thresholds(),
)
