"""Sequences, and the integer columns they feed, running out of range.

When a sequence reaches its maximum, ``nextval`` fails and every INSERT into the table
fails with it. A ``serial`` (integer) key stops at 2,147,483,647 even when its sequence is
``bigint``: the column's type is the limit then, not the sequence's. A column is fed by a
sequence when it owns it (``serial``: pg_depend deptype ``a``; identity: ``i``) or its
default calls ``nextval`` on it.

The used fraction is measured in the direction the sequence moves, between its effective
bounds (the tighter of the sequence's MINVALUE/MAXVALUE and the column type's range), so
descending sequences and custom MINVALUE work too. Sequences never used (or hidden from
this role: ``last_value`` is NULL) are skipped, and so is a CYCLE sequence that feeds no
column (wrapping is what it is for).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Final, Literal

from psycopg import sql

from pgrunbook.catalog import Catalog
from pgrunbook.discover.check import Check, CheckResult
from pgrunbook.discover.context import Context
from pgrunbook.findings import Finding, Severity

# pg_sequences hides last_value (NULL) without USAGE/SELECT and before the first nextval.
SEQUENCES_SQL: Final = """
SELECT c.oid::int8 AS oid, s.schemaname AS schema, s.sequencename AS name,
       s.data_type::text AS data_type, s.min_value, s.max_value,
       s.increment_by AS increment, s.cycle, s.last_value
  FROM pg_sequences s
  JOIN pg_namespace n ON n.nspname = s.schemaname
  JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = s.sequencename
 WHERE s.schemaname = %(schema)s
 ORDER BY s.sequencename
"""

# The columns each sequence of the schema feeds: owned (serial 'a', identity 'i') or
# through a DEFAULT nextval(...) ('n' from pg_attrdef); one row per column, owner first.
FED_COLUMNS_SQL: Final = """
WITH fed AS (
    SELECT d.objid AS sequence_oid, d.refobjid AS table_oid, d.refobjsubid AS attnum,
           CASE d.deptype WHEN 'i' THEN 'identity' ELSE 'owned' END AS feed
      FROM pg_depend d
     WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
       AND d.deptype IN ('a', 'i') AND d.refobjsubid > 0
    UNION ALL
    SELECT d.refobjid, ad.adrelid, ad.adnum, 'default'
      FROM pg_depend d
      JOIN pg_attrdef ad ON ad.oid = d.objid
     WHERE d.classid = 'pg_attrdef'::regclass AND d.refclassid = 'pg_class'::regclass
       AND d.deptype = 'n'
)
SELECT DISTINCT ON (f.sequence_oid, f.table_oid, f.attnum)
       f.sequence_oid::int8 AS sequence_oid, f.table_oid::int8 AS table_oid,
       tn.nspname AS table_schema, t.relname AS table_name,
       a.attnum::int AS column_num, a.attname AS column_name,
       format_type(a.atttypid, a.atttypmod) AS column_type, f.feed
  FROM fed f
  JOIN pg_class sc ON sc.oid = f.sequence_oid AND sc.relkind = 'S'
  JOIN pg_namespace sn ON sn.oid = sc.relnamespace
  JOIN pg_attribute a ON a.attrelid = f.table_oid AND a.attnum = f.attnum
  JOIN pg_class t ON t.oid = f.table_oid
  JOIN pg_namespace tn ON tn.oid = t.relnamespace
 WHERE sn.nspname = %(schema)s AND NOT a.attisdropped
 ORDER BY f.sequence_oid, f.table_oid, f.attnum, f.feed = 'default'
"""

# The range of each integer type a column or a sequence can have.
INTEGER_RANGES: Final[dict[str, tuple[int, int]]] = {
    "smallint": (-(2**15), 2**15 - 1),
    "integer": (-(2**31), 2**31 - 1),
    "bigint": (-(2**63), 2**63 - 1),
}

Limit = Literal["sequence", "column", "both"]


@dataclass(frozen=True)
class Thresholds:
    warning_ratio: float = 0.50
    critical_ratio: float = 0.90


@dataclass(frozen=True)
class SequenceRow:
    oid: int
    schema: str
    name: str
    data_type: str
    min_value: int
    max_value: int
    increment: int
    cycle: bool
    last_value: int | None

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)


@dataclass(frozen=True)
class FedColumn:
    sequence_oid: int
    table_oid: int
    table_schema: str
    table_name: str
    column_num: int
    column_name: str
    column_type: str
    feed: str  # identity, owned or default

    @property
    def qualified(self) -> str:
        return f"{self.table_schema}.{self.table_name}.{self.column_name}"


@dataclass(frozen=True)
class Usage:
    """How far a sequence (as seen through one column, or alone) is through its range."""

    low: int
    high: int
    used_ratio: float
    remaining: int  # values left before nextval (or the column) fails
    limit: Limit  # which range ends first in the direction of travel


def usage(seq: SequenceRow, last_value: int, column_type: str | None) -> Usage:
    """The used fraction of the range left to the sequence, between its effective bounds."""
    low, high = seq.min_value, seq.max_value
    ascending = seq.increment > 0
    limit: Limit = "sequence"
    if column_type in INTEGER_RANGES:  # a numeric or text column adds no bound of its own
        col_low, col_high = INTEGER_RANGES[column_type]
        low, high = max(low, col_low), min(high, col_high)
        seq_end, col_end = (seq.max_value, col_high) if ascending else (-seq.min_value, -col_low)
        if seq_end >= col_end:
            limit = "both" if seq_end == col_end else "column"
    span = high - low
    done = last_value - low if ascending else high - last_value
    remaining = max(span - done, 0) // abs(seq.increment)
    ratio = min(max(done / span, 0.0), 1.0) if span > 0 else 1.0
    return Usage(low, high, ratio, remaining, limit)


def _referencing(catalog: Catalog, col: FedColumn) -> list[tuple[str, str, str, str]]:
    """(schema, table, column, type) of the foreign-key columns that point at ``col``."""
    out = []
    for table in catalog:
        for fk in table.foreign_keys:
            if fk.ref_table_oid != col.table_oid or not fk.ref_columns or not fk.columns:
                continue
            for num, ref_num in zip(fk.columns, fk.ref_columns, strict=False):
                child = table.column_by_num.get(num)
                if ref_num == col.column_num and child is not None:
                    out.append((table.schema, table.name, child.name, child.type))
    return out


def _widen_column(schema: str, table: str, column: str) -> sql.Composed:
    return sql.SQL("ALTER TABLE {} ALTER COLUMN {} TYPE bigint;").format(
        sql.Identifier(schema, table), sql.Identifier(column)
    )


def fix_sql(
    seq: SequenceRow, col: FedColumn | None, use: Usage, refs: list[tuple[str, str, str, str]]
) -> str | None:
    """Widen what runs out first: the column (and its referencing columns), the sequence."""
    statements: list[sql.Composable] = []
    if col is not None and use.limit in ("column", "both") and col.column_type != "bigint":
        statements.append(
            sql.SQL("-- rewrites the table and its indexes under an ACCESS EXCLUSIVE lock")
        )
        statements.append(_widen_column(col.table_schema, col.table_name, col.column_name))
        for schema, table, column, type_ in refs:
            if type_ in ("smallint", "integer"):
                statements.append(_widen_column(schema, table, column))
    # An identity column's type change carries its sequence along; serial's does not.
    carried = col is not None and col.feed == "identity" and bool(statements)
    if use.limit in ("sequence", "both") and not carried:
        type_low, type_high = INTEGER_RANGES[seq.data_type]
        options: list[sql.Composable] = []
        if seq.data_type != "bigint":
            options.append(sql.SQL("AS bigint"))
        if seq.increment > 0 and seq.max_value < type_high:
            options.append(sql.SQL("NO MAXVALUE"))
        if seq.increment < 0 and seq.min_value > type_low:
            options.append(sql.SQL("NO MINVALUE"))
        if options:
            statements.append(
                sql.SQL("ALTER SEQUENCE {} {};").format(seq.ident, sql.SQL(" ").join(options))
            )
    if not statements:
        return None
    return sql.SQL("\n").join(statements).as_string()


def _finding(
    seq: SequenceRow,
    last_value: int,
    col: FedColumn | None,
    use: Usage,
    limits: Thresholds,
    catalog: Catalog,
) -> Finding | None:
    if use.used_ratio < limits.warning_ratio:
        return None
    critical = use.used_ratio >= limits.critical_ratio
    refs = _referencing(catalog, col) if col is not None else []
    bound = use.high if seq.increment > 0 else use.low
    what = f"sequence {seq.qualified}"
    if col is not None:
        what += f" feeding {col.qualified} ({col.column_type})"
    whose = {"column": "the column's type", "sequence": "the sequence", "both": "both"}[use.limit]
    details: dict[str, Any] = {
        "sequence": seq.qualified,
        "column": col.qualified if col is not None else None,
        "type": col.column_type if col is not None else seq.data_type,
        "sequence_type": seq.data_type,
        "last_value": last_value,
        "min_value": use.low,
        "max_value": use.high,
        "increment": seq.increment,
        "used_ratio": use.used_ratio,
        "remaining": use.remaining,
        "limited_by": use.limit,
        "cycle": seq.cycle,
        "referenced_by": [f"{s}.{t}.{c}" for s, t, c, _ in refs],
    }
    return Finding(
        check=CHECK.id,
        severity=Severity.CRITICAL if critical else Severity.WARNING,
        object=seq.qualified,
        message=f"{what} has used {use.used_ratio:.1%} of its range (last value "
        f"{last_value:,}, limit {bound:,} set by {whose}): INSERTs fail once it runs out",
        details=details,
        fix=fix_sql(seq, col, use, refs),
    )


def run(ctx: Context, limits: Thresholds) -> CheckResult:
    params = {"schema": ctx.schema}
    sequences = ctx.rows(SequenceRow, SEQUENCES_SQL, params)
    fed: dict[int, list[FedColumn]] = defaultdict(list)
    for row in ctx.rows(FedColumn, FED_COLUMNS_SQL, params):
        fed[row.sequence_oid].append(row)
    findings = []
    unread = 0
    top = 0.0
    for seq in sequences:
        if seq.last_value is None:
            unread += 1
            continue
        targets: list[FedColumn | None] = list(fed[seq.oid]) or [None]
        if targets == [None] and seq.cycle:
            continue
        for col in targets:
            use = usage(seq, seq.last_value, col.column_type if col else None)
            top = max(top, use.used_ratio)
            found = _finding(seq, seq.last_value, col, use, limits, ctx.catalog)
            if found is not None:
                findings.append(found)
    facts = {
        "sequences": len(sequences),
        "unused_or_hidden": unread,
        "highest_used_ratio": top if len(sequences) > unread else None,
    }
    return CheckResult(findings, facts)


CHECK = Check(
    id="sequences",
    title="Sequences and integer keys running out of range",
    run=run,
    thresholds=Thresholds(),
)
