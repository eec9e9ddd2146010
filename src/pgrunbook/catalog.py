"""One snapshot of a schema's tables, columns, indexes, constraints and triggers.

Discovery reads the catalog once, with one set-based query per kind of object, so a schema
of thousands of tables costs a handful of round trips; checks then work on these objects
in Python. Every number is raw (bytes, counts); oids join everything.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any, Final

import psycopg

from pgrunbook.rows import fetch

TABLES_SQL: Final = """
SELECT c.oid::int8 AS oid, n.nspname AS schema, c.relname AS name, c.relkind::text AS kind,
       c.relispartition AS is_partition,
       c.reltuples::float8 AS reltuples, c.relpages::int8 AS pages,
       pg_total_relation_size(c.oid) AS total_bytes,
       pg_relation_size(c.oid) AS table_bytes,
       pg_indexes_size(c.oid) AS index_bytes,
       coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0) AS toast_bytes,
       EXISTS (SELECT 1 FROM pg_constraint p
                WHERE p.conrelid = c.oid AND p.contype = 'p') AS has_primary_key,
       st.tablename IS NOT NULL AS has_statistics,
       s.n_live_tup, s.n_dead_tup, s.n_mod_since_analyze,
       s.last_vacuum, s.last_autovacuum, s.last_analyze, s.last_autoanalyze,
       s.seq_scan, s.seq_tup_read, s.idx_scan, s.n_tup_ins, s.n_tup_upd, s.n_tup_del
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_stat_all_tables s ON s.relid = c.oid
  LEFT JOIN (SELECT DISTINCT tablename FROM pg_stats WHERE schemaname = %(schema)s) st
         ON st.tablename = c.relname
 WHERE n.nspname = %(schema)s AND c.relkind IN ('r', 'p')
 ORDER BY c.relname
"""

COLUMNS_SQL: Final = """
SELECT a.attrelid::int8 AS table_oid, a.attnum::int AS num, a.attname AS name,
       a.atttypid::int8 AS type_oid, format_type(a.atttypid, a.atttypmod) AS type,
       a.attnotnull AS not_null
  FROM pg_attribute a
  JOIN pg_class c ON c.oid = a.attrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = %(schema)s AND c.relkind IN ('r', 'p') AND a.attnum > 0
   AND NOT a.attisdropped
 ORDER BY a.attrelid, a.attnum
"""

INDEXES_SQL: Final = """
SELECT i.indexrelid::int8 AS oid, ic.relname AS name, i.indrelid::int8 AS table_oid,
       am.amname AS method, i.indisunique AS is_unique, i.indisprimary AS is_primary,
       i.indisvalid AS valid, i.indisready AS ready,
       i.indnkeyatts::int AS key_count,
       i.indkey::int2[]::int[] AS attnums,
       i.indclass::oid[]::int8[] AS opclasses,
       i.indcollation::oid[]::int8[] AS collations,
       i.indoption::int2[]::int[] AS options,
       ARRAY(SELECT pg_get_indexdef(i.indexrelid, k, true)
               FROM generate_series(1, i.indnatts) AS k ORDER BY k) AS column_defs,
       pg_get_expr(i.indpred, i.indrelid, true) AS predicate,
       pg_get_indexdef(i.indexrelid) AS definition,
       pg_relation_size(i.indexrelid) AS bytes,
       ic.reltuples::float8 AS reltuples, ic.relpages::int8 AS pages,
       s.idx_scan, s.idx_tup_read,
       con.conname AS constraint_name, con.contype::text AS constraint_type
  FROM pg_index i
  JOIN pg_class ic ON ic.oid = i.indexrelid
  JOIN pg_class tc ON tc.oid = i.indrelid
  JOIN pg_namespace n ON n.oid = tc.relnamespace
  JOIN pg_am am ON am.oid = ic.relam
  LEFT JOIN pg_stat_all_indexes s ON s.indexrelid = i.indexrelid
  LEFT JOIN pg_constraint con
         ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid
        AND con.contype IN ('p', 'u', 'x')
 WHERE n.nspname = %(schema)s AND tc.relkind IN ('r', 'p', 'm')
 ORDER BY tc.relname, ic.relname
"""

CONSTRAINTS_SQL: Final = """
SELECT con.oid::int8 AS oid, con.conname AS name, con.contype::text AS type,
       con.conrelid::int8 AS table_oid,
       con.conkey::int[] AS columns,
       nullif(con.confrelid, 0)::int8 AS ref_table_oid,
       rn.nspname AS ref_schema, rc.relname AS ref_table,
       con.confkey::int[] AS ref_columns,
       con.convalidated AS validated,
       pg_get_constraintdef(con.oid, true) AS definition
  FROM pg_constraint con
  JOIN pg_class c ON c.oid = con.conrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_class rc ON rc.oid = con.confrelid
  LEFT JOIN pg_namespace rn ON rn.oid = rc.relnamespace
 WHERE n.nspname = %(schema)s AND con.contype IN ('p', 'u', 'x', 'f', 'c')
 ORDER BY c.relname, con.conname
"""

TRIGGERS_SQL: Final = """
SELECT t.tgrelid::int8 AS table_oid, t.tgname AS name, pn.nspname AS function_schema,
       p.proname AS function, p.prosrc AS function_source, t.tgtype::int AS type,
       t.tgenabled::text AS enabled
  FROM pg_trigger t
  JOIN pg_class c ON c.oid = t.tgrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_proc p ON p.oid = t.tgfoid
  JOIN pg_namespace pn ON pn.oid = p.pronamespace
 WHERE n.nspname = %(schema)s AND NOT t.tgisinternal
 ORDER BY c.relname, t.tgname
"""

# pg_trigger.tgtype bits (src/include/catalog/pg_trigger.h)
TRIGGER_ROW: Final = 1
TRIGGER_BEFORE: Final = 2
TRIGGER_INSERT: Final = 4
TRIGGER_UPDATE: Final = 16

# pg_index.indoption bits
INDOPTION_DESC: Final = 1
INDOPTION_NULLS_FIRST: Final = 2


@dataclass
class Column:
    table_oid: int
    num: int
    name: str
    type_oid: int
    type: str
    not_null: bool


@dataclass
class Index:
    oid: int
    name: str
    table_oid: int
    method: str
    is_unique: bool
    is_primary: bool
    valid: bool
    ready: bool
    key_count: int
    attnums: list[int]  # 0 for an expression column
    opclasses: list[int]
    collations: list[int]
    options: list[int]
    column_defs: list[str]  # as pg_get_indexdef renders each column (or expression)
    predicate: str | None
    definition: str
    bytes: int
    reltuples: float
    pages: int
    idx_scan: int | None
    idx_tup_read: int | None
    constraint_name: str | None
    constraint_type: str | None  # p, u or x when the index backs a constraint
    schema: str = ""
    table: str = ""

    @property
    def key_defs(self) -> list[str]:
        return self.column_defs[: self.key_count]

    @property
    def include_defs(self) -> list[str]:
        return self.column_defs[self.key_count :]

    @property
    def backs_constraint(self) -> bool:
        return self.constraint_type is not None

    @property
    def has_expressions(self) -> bool:
        return 0 in self.attnums[: self.key_count]

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass
class Constraint:
    oid: int
    name: str
    type: str  # p u x f c
    table_oid: int
    columns: list[int] | None
    ref_table_oid: int | None
    ref_schema: str | None
    ref_table: str | None
    ref_columns: list[int] | None
    validated: bool
    definition: str


@dataclass
class Trigger:
    table_oid: int
    name: str
    function_schema: str
    function: str
    function_source: str
    type: int
    enabled: str  # O (origin), D (disabled), R (replica), A (always)

    @property
    def before_update_row(self) -> bool:
        wanted = TRIGGER_ROW | TRIGGER_BEFORE | TRIGGER_UPDATE
        return self.type & wanted == wanted

    @property
    def is_enabled(self) -> bool:
        return self.enabled != "D"


@dataclass
class Table:
    oid: int
    schema: str
    name: str
    kind: str  # r (table) or p (partitioned)
    is_partition: bool
    reltuples: float  # -1: never vacuumed or analyzed (PostgreSQL 14+)
    pages: int
    total_bytes: int
    table_bytes: int
    index_bytes: int
    toast_bytes: int
    has_primary_key: bool
    has_statistics: bool  # pg_stats has rows for it (survives a restart or a clone)
    n_live_tup: int | None
    n_dead_tup: int | None
    n_mod_since_analyze: int | None
    last_vacuum: datetime | None
    last_autovacuum: datetime | None
    last_analyze: datetime | None
    last_autoanalyze: datetime | None
    seq_scan: int | None
    seq_tup_read: int | None
    idx_scan: int | None
    n_tup_ins: int | None
    n_tup_upd: int | None
    n_tup_del: int | None
    columns: list[Column] = field(default_factory=list)
    indexes: list[Index] = field(default_factory=list)
    constraints: list[Constraint] = field(default_factory=list)
    triggers: list[Trigger] = field(default_factory=list)

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def estimated_rows(self) -> int:
        return max(int(self.reltuples), 0)

    @cached_property
    def column_by_num(self) -> dict[int, Column]:
        return {c.num: c for c in self.columns}

    def column(self, name: str) -> Column | None:
        for col in self.columns:
            if col.name == name:
                return col
        return None

    def column_names(self, nums: list[int] | None) -> list[str]:
        return [self.column_by_num[n].name for n in nums or [] if n in self.column_by_num]

    @property
    def primary_key(self) -> Constraint | None:
        return next((c for c in self.constraints if c.type == "p"), None)

    @property
    def foreign_keys(self) -> list[Constraint]:
        return [c for c in self.constraints if c.type == "f"]


@dataclass
class Catalog:
    """The tables of one schema with everything attached to them."""

    schema: str
    tables: list[Table]

    def __iter__(self) -> Iterator[Table]:
        return iter(self.tables)

    @cached_property
    def by_oid(self) -> dict[int, Table]:
        return {t.oid: t for t in self.tables}

    @cached_property
    def by_name(self) -> dict[str, Table]:
        return {t.name: t for t in self.tables}

    def indexes(self) -> Iterator[Index]:
        for table in self.tables:
            yield from table.indexes


def load_catalog(conn: psycopg.Connection[Any], schema: str) -> Catalog:
    """Read ``schema``'s tables and what hangs off them (five queries, whatever the size)."""
    params = {"schema": schema}

    tables = fetch(conn, Table, TABLES_SQL, params)
    by_oid = {t.oid: t for t in tables}
    for col in fetch(conn, Column, COLUMNS_SQL, params):
        by_oid[col.table_oid].columns.append(col)
    for index in fetch(conn, Index, INDEXES_SQL, params):
        owner = by_oid.get(index.table_oid)
        if owner is not None:  # indexes of materialized views are not ours to judge
            index.schema, index.table = owner.schema, owner.name
            owner.indexes.append(index)
    for con in fetch(conn, Constraint, CONSTRAINTS_SQL, params):
        if con.table_oid in by_oid:
            by_oid[con.table_oid].constraints.append(con)
    for trigger in fetch(conn, Trigger, TRIGGERS_SQL, params):
        if trigger.table_oid in by_oid:
            by_oid[trigger.table_oid].triggers.append(trigger)
    return Catalog(schema, tables)
