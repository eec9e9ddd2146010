"""Table and btree index bloat: space a relation holds beyond what its rows need.

The estimate compares each relation's size with the pages its rows would fill when packed
as PostgreSQL packs them (see "Database Page Layout" in the PostgreSQL docs):

- a heap page holds a 24-byte page header, and per row a 4-byte item pointer plus the
  tuple (a 23-byte header, the null bitmap when the row has nulls, padded to MAXALIGN,
  then the columns, each aligned to its type's alignment); inserts leave
  ``100 - fillfactor`` percent of each page free;
- a btree leaf page holds a 24-byte page header, a 16-byte special area, a high key, and
  per entry a 4-byte item pointer plus the index tuple (an 8-byte header, a 4-byte null
  bitmap when there are nulls, padded to MAXALIGN, then the key and INCLUDE columns); a
  build fills leaves to the fillfactor (90 by default) and inner pages to 70%.

Row counts come from ``pg_class.reltuples`` and column widths from ``pg_stats``
(``avg_width``, ``null_frac``), so the estimate is only as good as the last ANALYZE: each
estimate carries a confidence note ("high", or "low" with the reason). Low-confidence
estimates are reported as info only. When ``pgstattuple`` is installed, the candidates over
the threshold (a bounded number, each under a statement timeout) are measured
(``pgstattuple``/``pgstattuple_approx`` for tables, ``pgstatindex`` for indexes) and the
measured figure decides.

The estimate is two set-based queries for the whole schema, plus one query per measured
candidate. The estimate functions (``estimate``, ``measure``) are reusable outside
discovery (``pgrunbook maintain`` picks indexes to rebuild with them).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal

import psycopg
from psycopg import errors, sql
from psycopg.rows import class_row

from pgrunbook.catalog import Catalog, Index, Table
from pgrunbook.discover.check import Check, CheckResult
from pgrunbook.discover.context import Context
from pgrunbook.findings import Finding, Severity
from pgrunbook.report.units import size

# One row per column of every table, and per column of every btree index, of the schema,
# with its type's layout and where its statistics are: an index column on a table column
# takes that column's, an expression column the index's own (ANALYZE collects statistics
# for index expressions under the index's name).
LAYOUT_SQL: Final = """
WITH tables AS (
  SELECT c.oid, c.relname, c.reloptions
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname = %(schema)s AND c.relkind = 'r'
)
SELECT t.oid::int8 AS rel_oid, 'table' AS kind, a.attnum::int AS position,
       a.attname::text AS name, ty.typlen::int AS typlen, ty.typalign::text AS typalign,
       false AS expression,
       t.relname::text AS stats_relation, a.attname::text AS stats_column,
       (SELECT o.option_value::int FROM pg_options_to_table(t.reloptions) o
         WHERE o.option_name = 'fillfactor') AS fillfactor,
       current_setting('block_size')::int AS block_size
  FROM tables t
  JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum > 0 AND NOT a.attisdropped
  JOIN pg_type ty ON ty.oid = a.atttypid
UNION ALL
SELECT i.indexrelid::int8, 'index', ia.attnum::int, ia.attname::text, ty.typlen::int,
       ty.typalign::text,
       i.indkey[ia.attnum - 1] = 0,
       CASE WHEN i.indkey[ia.attnum - 1] = 0 THEN ic.relname ELSE t.relname END::text,
       coalesce(ta.attname, ia.attname)::text,
       (SELECT o.option_value::int FROM pg_options_to_table(ic.reloptions) o
         WHERE o.option_name = 'fillfactor'),
       current_setting('block_size')::int
  FROM tables t
  JOIN pg_index i ON i.indrelid = t.oid
  JOIN pg_class ic ON ic.oid = i.indexrelid AND ic.relkind = 'i'
  JOIN pg_am am ON am.oid = ic.relam AND am.amname = 'btree'
  JOIN pg_attribute ia ON ia.attrelid = i.indexrelid AND ia.attnum > 0
  JOIN pg_type ty ON ty.oid = ia.atttypid
  LEFT JOIN pg_attribute ta ON ta.attrelid = t.oid AND ta.attnum = i.indkey[ia.attnum - 1]
 ORDER BY 1, 3
"""

# The schema's column statistics (tables, and index expressions), joined to the layout in
# Python: pg_stats is a view the planner misjudges, so joining it per column is slow.
STATS_SQL: Final = """
SELECT s.tablename::text AS relation, s.attname::text AS column, s.avg_width::int AS avg_width,
       s.null_frac::float8 AS null_frac
  FROM pg_stats s
 WHERE s.schemaname = %(schema)s AND NOT s.inherited
"""

# pgstattuple's functions, composed with the schema the extension lives in.
TABLE_EXACT_SQL: Final = sql.SQL(
    """
SELECT table_len::int8, tuple_len::int8, dead_tuple_len::int8, free_space::int8
  FROM {}(%(oid)s::oid::regclass)
"""
)
TABLE_APPROX_SQL: Final = sql.SQL(
    """
SELECT table_len::int8, approx_tuple_len::int8 AS tuple_len, dead_tuple_len::int8,
       approx_free_space::int8 AS free_space
  FROM {}(%(oid)s::oid::regclass)
"""
)
INDEX_SQL: Final = sql.SQL(
    """
SELECT index_size::int8, internal_pages::int8, leaf_pages::int8, empty_pages::int8,
       deleted_pages::int8, avg_leaf_density::float8, leaf_fragmentation::float8
  FROM {}(%(oid)s::oid::regclass)
"""
)

# Page layout constants (src/include/storage/bufpage.h, access/htup_details.h, nbtree.h).
MAXALIGN: Final = 8
PAGE_HEADER: Final = 24
ITEM_POINTER: Final = 4
HEAP_TUPLE_HEADER: Final = 23
INDEX_TUPLE_HEADER: Final = 8
INDEX_NULL_BITMAP: Final = 4
BTREE_SPECIAL: Final = 16
BTREE_DEFAULT_FILLFACTOR: Final = 90
BTREE_NONLEAF_FILLFACTOR: Final = 70
HEAP_DEFAULT_FILLFACTOR: Final = 100
SHORT_VARLENA_MAX: Final = 127  # values shorter than this get a 1-byte header, no alignment
# The width the planner assumes for a variable-length value it knows nothing about
# (get_typavgwidth): used, with low confidence, for columns without statistics.
UNKNOWN_VARLENA_WIDTH: Final = 32
ALIGNMENT: Final = {"c": 1, "s": 2, "i": 4, "d": 8}

Kind = Literal["table", "index"]
Confidence = Literal["high", "low"]


@dataclass(frozen=True)
class Thresholds:
    min_bytes: int = 10 * 1024 * 1024  # smaller relations are not judged
    warn_ratio: float = 0.30  # wasted / actual size for a warning ...
    critical_ratio: float = 0.60  # ... and for critical
    # An estimate is "low" confidence when more rows than this share changed since ANALYZE.
    stale_analyze_ratio: float = 0.20
    # Tables whose dead rows are at least this share get VACUUM first, never a rewrite.
    vacuum_first_dead_ratio: float = 0.10
    max_measured: int = 10  # candidates measured with pgstattuple, largest waste first
    measure_timeout_ms: int = 10_000  # statement timeout of each measurement
    exact_max_bytes: int = 64 * 1024 * 1024  # tables up to this use pgstattuple, else _approx


@dataclass(frozen=True)
class ColumnWidth:
    rel_oid: int
    kind: str
    position: int
    name: str
    typlen: int
    typalign: str
    expression: bool
    stats_relation: str
    stats_column: str
    fillfactor: int | None
    block_size: int
    avg_width: int | None = None  # from pg_stats; None without statistics
    null_frac: float | None = None


@dataclass(frozen=True)
class ColumnStats:
    relation: str
    column: str
    avg_width: int
    null_frac: float


@dataclass(frozen=True)
class TableMeasure:
    table_len: int
    tuple_len: int
    dead_tuple_len: int
    free_space: int


@dataclass(frozen=True)
class IndexMeasure:
    index_size: int
    internal_pages: int
    leaf_pages: int
    empty_pages: int
    deleted_pages: int
    avg_leaf_density: float
    leaf_fragmentation: float


@dataclass(frozen=True)
class Measurement:
    method: str  # pgstattuple, pgstattuple_approx or pgstatindex
    actual_bytes: int
    wasted_bytes: int
    raw: dict[str, Any]

    @property
    def ratio(self) -> float:
        return self.wasted_bytes / self.actual_bytes if self.actual_bytes else 0.0


@dataclass(frozen=True)
class Estimate:
    kind: Kind
    table: Table
    index: Index | None
    actual_bytes: int
    expected_bytes: int
    rows: float
    tuple_bytes: float  # the average tuple, with header and padding, without item pointer
    fillfactor: int
    block_size: int
    confidence: Confidence
    reasons: tuple[str, ...] = field(default_factory=tuple)

    @property
    def oid(self) -> int:
        return self.index.oid if self.index else self.table.oid

    @property
    def object(self) -> str:
        return self.index.qualified if self.index else self.table.qualified

    @property
    def wasted_bytes(self) -> int:
        return max(self.actual_bytes - self.expected_bytes, 0)

    @property
    def ratio(self) -> float:
        return self.wasted_bytes / self.actual_bytes if self.actual_bytes else 0.0

    @property
    def confidence_note(self) -> str:
        return self.confidence + (f" ({'; '.join(self.reasons)})" if self.reasons else "")


def _align(offset: float, alignment: int) -> float:
    return math.ceil(offset / alignment) * alignment


def _data_width(columns: Iterable[ColumnWidth]) -> tuple[float, bool, list[str]]:
    """Average bytes of the columns' data with alignment padding; any nulls; unknown widths.

    A column mostly null adds its share of width but no padding; a variable-length value
    short enough for a 1-byte header is not aligned.
    """
    offset, nulls, unknown = 0.0, False, []
    for col in columns:
        if col.avg_width is not None:
            width = float(col.avg_width)
        elif col.typlen > 0:
            width = float(col.typlen)
        else:
            width = float(UNKNOWN_VARLENA_WIDTH)
        if col.avg_width is None:
            unknown.append(col.name)
        null_frac = col.null_frac or 0.0
        nulls = nulls or null_frac > 0
        aligned = col.typlen > 0 or (col.typlen == -1 and width >= SHORT_VARLENA_MAX)
        if aligned and null_frac < 0.5:
            offset = _align(offset, ALIGNMENT.get(col.typalign, 1))
        offset += width * (1 - null_frac)
    return offset, nulls, unknown


def heap_pages(
    columns: list[ColumnWidth], rows: float, fillfactor: int, block_size: int
) -> tuple[int, float]:
    """Pages ``rows`` rows fill when packed, and the average tuple size."""
    data, nulls, _ = _data_width(columns)
    header = HEAP_TUPLE_HEADER + (math.ceil(len(columns) / 8) if nulls else 0)
    tuple_bytes = _align(_align(header, MAXALIGN) + data, MAXALIGN)
    reserved = block_size * (100 - fillfactor) // 100
    max_tuples = (block_size - PAGE_HEADER) // (_align(HEAP_TUPLE_HEADER, 8) + ITEM_POINTER)
    usable = block_size - PAGE_HEADER - reserved
    per_page = max(1, min(int(usable // (tuple_bytes + ITEM_POINTER)), max_tuples))
    return math.ceil(rows / per_page), tuple_bytes


def btree_pages(
    columns: list[ColumnWidth], rows: float, fillfactor: int, block_size: int
) -> tuple[int, float]:
    """Pages a freshly built btree of ``rows`` entries fills (meta, inner and leaf pages)."""
    data, nulls, _ = _data_width(columns)
    header = _align(INDEX_TUPLE_HEADER + (INDEX_NULL_BITMAP if nulls else 0), MAXALIGN)
    tuple_bytes = _align(header + data, MAXALIGN)
    entry = tuple_bytes + ITEM_POINTER
    space = block_size - PAGE_HEADER - BTREE_SPECIAL
    leaf_usable = space - block_size * (100 - fillfactor) // 100
    per_leaf = max(1, int(leaf_usable // entry) - 1)  # one slot holds the high key
    per_inner = max(2, int(space * BTREE_NONLEAF_FILLFACTOR / 100 // entry) - 1)
    leaves = math.ceil(rows / per_leaf)
    inner, level = 0, leaves
    while level > 1:
        level = math.ceil(level / per_inner)
        inner += level
    return 1 + leaves + inner, tuple_bytes


def _analyzed(table: Table) -> bool:
    return table.last_analyze is not None or table.last_autoanalyze is not None


def _stale(table: Table, stale_ratio: float) -> list[str]:
    changed = table.n_mod_since_analyze or 0
    if _analyzed(table) and changed > stale_ratio * max(table.reltuples, 1.0):
        return [f"{changed:,} rows changed since the last analyze"]
    return []


def _column_reasons(columns: list[ColumnWidth]) -> list[str]:
    expressions = sorted({c.name for c in columns if c.expression and c.avg_width is None})
    plain = [c.name for c in columns if not c.expression and c.avg_width is None]
    reasons = []
    if plain:
        reasons.append(f"no statistics for column(s) {', '.join(plain)}")
    if expressions:
        reasons.append(f"no statistics for expression column(s) {', '.join(expressions)}")
    return reasons


def estimate(
    conn: psycopg.Connection[Any],
    catalog: Catalog,
    *,
    min_bytes: int = 0,
    stale_analyze_ratio: float = 0.20,
) -> list[Estimate]:
    """The bloat estimate of every table and btree index of the catalog's schema.

    Relations smaller than ``min_bytes``, and those without a row count (never vacuumed
    nor analyzed: ``reltuples = -1``), are left out. Two queries, whatever the number of
    relations.
    """
    params = {"schema": catalog.schema}
    layout = conn.cursor(row_factory=class_row(ColumnWidth)).execute(LAYOUT_SQL, params)
    stats = {
        (s.relation, s.column): s
        for s in conn.cursor(row_factory=class_row(ColumnStats)).execute(STATS_SQL, params)
    }
    columns: dict[int, list[ColumnWidth]] = defaultdict(list)
    for col in layout.fetchall():
        known = stats.get((col.stats_relation, col.stats_column))
        if known is not None:
            col = replace(col, avg_width=known.avg_width, null_frac=known.null_frac)
        columns[col.rel_oid].append(col)
    out = []
    for table in catalog:
        own = columns.get(table.oid)
        if own is None:  # not a plain table, or one without columns
            continue
        # No analyze time and no statistics at all: never analyzed. (Statistics without an
        # analyze time mean the counters were reset, e.g. by a Neon compute restart.)
        never = not _analyzed(table) and all(c.avg_width is None for c in own)
        stale = _stale(table, stale_analyze_ratio)
        if table.reltuples >= 0 and table.table_bytes >= min_bytes:
            fillfactor = own[0].fillfactor or HEAP_DEFAULT_FILLFACTOR
            pages, tuple_bytes = heap_pages(own, table.reltuples, fillfactor, own[0].block_size)
            reasons = (
                ("the table was never analyzed",) if never else (*stale, *_column_reasons(own))
            )
            out.append(
                Estimate(
                    kind="table",
                    table=table,
                    index=None,
                    actual_bytes=table.table_bytes,
                    expected_bytes=pages * own[0].block_size,
                    rows=table.reltuples,
                    tuple_bytes=tuple_bytes,
                    fillfactor=fillfactor,
                    block_size=own[0].block_size,
                    confidence="low" if reasons else "high",
                    reasons=reasons,
                )
            )
        for index in table.indexes:
            keys = columns.get(index.oid)
            rows = index.reltuples if index.reltuples >= 0 else table.reltuples
            if keys is None or rows < 0 or not index.valid or index.bytes < min_bytes:
                continue
            fillfactor = keys[0].fillfactor or BTREE_DEFAULT_FILLFACTOR
            pages, tuple_bytes = btree_pages(keys, rows, fillfactor, keys[0].block_size)
            reasons = (
                ("the table was never analyzed",) if never else (*stale, *_column_reasons(keys))
            )
            out.append(
                Estimate(
                    kind="index",
                    table=table,
                    index=index,
                    actual_bytes=index.bytes,
                    expected_bytes=pages * keys[0].block_size,
                    rows=rows,
                    tuple_bytes=tuple_bytes,
                    fillfactor=fillfactor,
                    block_size=keys[0].block_size,
                    confidence="low" if reasons else "high",
                    reasons=reasons,
                )
            )
    return out


def measure(
    conn: psycopg.Connection[Any],
    found: Estimate,
    pgstattuple_schema: str,
    *,
    exact_max_bytes: int = 64 * 1024 * 1024,
) -> Measurement:
    """Measure one relation with pgstattuple (reads it: bound it with a statement timeout).

    Tables: wasted = free space + dead tuples - the free space the fillfactor reserves.
    Indexes: wasted = size - (meta + inner pages + leaf pages repacked to the fillfactor).
    """
    if found.kind == "index":
        function = sql.Identifier(pgstattuple_schema, "pgstatindex")
        query = INDEX_SQL.format(function)
        idx = (
            conn.cursor(row_factory=class_row(IndexMeasure))
            .execute(query, {"oid": found.oid})
            .fetchone()
        )
        assert idx is not None
        density = idx.avg_leaf_density if not math.isnan(idx.avg_leaf_density) else 0.0
        ideal_leaves = math.ceil(idx.leaf_pages * density / found.fillfactor)
        needed = (1 + idx.internal_pages + ideal_leaves) * found.block_size
        return Measurement(
            "pgstatindex",
            idx.index_size,
            max(int(idx.index_size - needed), 0),
            {
                "avg_leaf_density": density,
                "leaf_fragmentation": idx.leaf_fragmentation,
                "leaf_pages": idx.leaf_pages,
                "internal_pages": idx.internal_pages,
                "empty_pages": idx.empty_pages,
                "deleted_pages": idx.deleted_pages,
            },
        )
    exact = found.actual_bytes <= exact_max_bytes
    method = "pgstattuple" if exact else "pgstattuple_approx"
    template = TABLE_EXACT_SQL if exact else TABLE_APPROX_SQL
    query = template.format(sql.Identifier(pgstattuple_schema, method))
    heap = (
        conn.cursor(row_factory=class_row(TableMeasure))
        .execute(query, {"oid": found.oid})
        .fetchone()
    )
    assert heap is not None
    reserved = heap.table_len * (100 - found.fillfactor) // 100
    wasted = max(heap.free_space + heap.dead_tuple_len - reserved, 0)
    return Measurement(
        method,
        heap.table_len,
        wasted,
        {
            "tuple_len": heap.tuple_len,
            "dead_tuple_len": heap.dead_tuple_len,
            "free_space": heap.free_space,
        },
    )


def _severity(ratio: float, limits: Thresholds) -> Severity | None:
    if ratio >= limits.critical_ratio:
        return Severity.CRITICAL
    if ratio >= limits.warn_ratio:
        return Severity.WARNING
    return None


def _dead_share(found: Estimate, measured: Measurement | None) -> float:
    if measured is not None and measured.actual_bytes:
        return float(measured.raw.get("dead_tuple_len", 0)) / measured.actual_bytes
    dead = found.table.n_dead_tup or 0
    return dead / max(found.rows + dead, 1.0)


@dataclass(frozen=True)
class _Verdict:
    found: Estimate
    measured: Measurement | None = None
    note: str | None = None  # why it was not measured

    @property
    def ratio(self) -> float:
        return self.measured.ratio if self.measured else self.found.ratio

    @property
    def wasted_bytes(self) -> int:
        return self.measured.wasted_bytes if self.measured else self.found.wasted_bytes


def _fix_and_advice(
    verdict: _Verdict, severity: Severity, limits: Thresholds
) -> tuple[str | None, str, bool]:
    found = verdict.found
    if found.index is not None:
        target = sql.Identifier(found.index.schema, found.index.name)
        if found.index.constraint_type == "x":
            return None, "exclusion-constraint indexes cannot be rebuilt concurrently", False
        fix = sql.SQL("REINDEX INDEX CONCURRENTLY {};").format(target).as_string()
        return fix, "rebuild it without blocking writes", False
    vacuum = sql.SQL("VACUUM (ANALYZE) {};").format(
        sql.Identifier(found.table.schema, found.table.name)
    )
    dead = _dead_share(found, verdict.measured)
    if severity is Severity.CRITICAL and dead < limits.vacuum_first_dead_ratio:
        return (
            f"pgrunbook maintain --full --table {found.table.qualified}",
            "the space is already free and VACUUM cannot shrink the file, only a rewrite "
            "can (VACUUM FULL holds an ACCESS EXCLUSIVE lock, blocking reads and writes, "
            "for the whole rewrite)",
            True,
        )
    return vacuum.as_string(), "VACUUM makes the space reusable by new rows", False


def _finding(verdict: _Verdict, severity: Severity, limits: Thresholds) -> Finding:
    found, measured = verdict.found, verdict.measured
    if measured is None and found.confidence == "low":
        severity = Severity.INFO  # not trusted enough to warn
    what = "table" if found.kind == "table" else "index"
    amount = f"{size(verdict.wasted_bytes)} of {size(found.actual_bytes)}"
    if measured is not None:
        basis = f"{amount}, measured with {measured.method}; the estimate was {found.ratio:.0%}"
    else:
        basis = f"{amount} by estimate, {found.confidence_note} confidence"
        if verdict.note:
            basis += f"; not measured: {verdict.note}"
    fix, advice, rewrite = _fix_and_advice(verdict, severity, limits)
    message = f"{verdict.ratio:.0%} of the {what} is bloat ({basis}): {advice}"
    details: dict[str, Any] = {
        "kind": found.kind,
        "table": found.table.qualified,
        "actual_bytes": found.actual_bytes,
        "expected_bytes": found.expected_bytes,
        "estimated_wasted_bytes": found.wasted_bytes,
        "estimated_ratio": found.ratio,
        "rows": found.rows,
        "tuple_bytes": found.tuple_bytes,
        "fillfactor": found.fillfactor,
        "confidence": found.confidence,
        "confidence_reasons": list(found.reasons),
        "method": measured.method if measured else "estimate",
        "measured_bytes": measured.actual_bytes if measured else None,
        "measured_wasted_bytes": measured.wasted_bytes if measured else None,
        "measured_ratio": measured.ratio if measured else None,
        "not_measured_because": verdict.note,
        "warn_ratio": limits.warn_ratio,
        "critical_ratio": limits.critical_ratio,
    }
    if measured is not None:
        details.update(measured.raw)
    if found.kind == "table":
        details["rewrite_needed"] = rewrite
        details["vacuum_sql"] = (
            sql.SQL("VACUUM (ANALYZE) {};")
            .format(sql.Identifier(found.table.schema, found.table.name))
            .as_string()
        )
    return Finding(
        check=CHECK.id,
        severity=severity,
        object=found.object,
        message=message,
        details=details,
        fix=fix,
    )


def _measure_all(
    ctx: Context, candidates: list[Estimate], schema: str | None, limits: Thresholds
) -> list[_Verdict]:
    if schema is None:
        note = "pgstattuple is not installed"
        return [_Verdict(c, note=note) for c in candidates]
    out: list[_Verdict] = []
    denied: str | None = None
    ranked = sorted(candidates, key=lambda c: -c.wasted_bytes)
    for n, found in enumerate(ranked):
        if denied is not None:
            out.append(_Verdict(found, note=denied))
            continue
        if n >= limits.max_measured:
            out.append(_Verdict(found, note=f"only the {limits.max_measured} largest are measured"))
            continue
        try:
            with ctx.bounded(limits.measure_timeout_ms):
                measured = measure(ctx.conn, found, schema, exact_max_bytes=limits.exact_max_bytes)
        except errors.InsufficientPrivilege:
            denied = "this role may not run pgstattuple (grant it pg_stat_scan_tables)"
            out.append(_Verdict(found, note=denied))
        except errors.LockNotAvailable:
            out.append(_Verdict(found, note="it was locked (e.g. by a rewrite in progress)"))
        except errors.QueryCanceled:
            note = f"measuring took over {limits.measure_timeout_ms} ms"
            out.append(_Verdict(found, note=note))
        else:
            out.append(_Verdict(found, measured))
    return out


def run(ctx: Context, limits: Thresholds) -> CheckResult:
    judged = estimate(
        ctx.conn,
        ctx.catalog,
        min_bytes=limits.min_bytes,
        stale_analyze_ratio=limits.stale_analyze_ratio,
    )
    candidates = [e for e in judged if e.ratio >= limits.warn_ratio]
    schema = ctx.extension_schema("pgstattuple")
    findings, cleared = [], []
    for verdict in _measure_all(ctx, candidates, schema, limits):
        severity = _severity(verdict.ratio, limits)
        if severity is None:
            cleared.append(verdict)  # the measurement found less than the estimate
            continue
        findings.append(_finding(verdict, severity, limits))
    estimated = {e.oid for e in judged}
    facts = {
        "judged": [
            {
                "object": e.object,
                "kind": e.kind,
                "actual_bytes": e.actual_bytes,
                "estimated_wasted_bytes": e.wasted_bytes,
                "estimated_ratio": e.ratio,
                "confidence": e.confidence_note,
            }
            for e in judged
        ],
        "measured_below_threshold": [
            {"object": v.found.object, "measured_ratio": v.ratio} for v in cleared
        ],
        "not_estimated": [
            t.qualified
            for t in ctx.catalog
            if t.kind == "r" and t.oid not in estimated and t.table_bytes >= limits.min_bytes
        ],
        "pgstattuple": schema is not None,
    }
    return CheckResult(findings, facts)


CHECK = Check(
    id="bloat",
    title="Table and btree index bloat",
    run=run,
    thresholds=Thresholds(),
)
