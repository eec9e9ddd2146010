"""Index usage: per table the share of index scans against sequential scans (tables that
read the most rows by sequential scans first), and the schema's least used indexes.

Sizes come from ``pg_class.relpages`` (as of the last VACUUM, ANALYZE or CREATE INDEX):
``pg_relation_size`` would take a lock on each relation, and that lock waits behind a queued
``ACCESS EXCLUSIVE`` request, which is exactly when a monitor must not hang.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import psycopg

from pgrunbook.rows import as_json, fetch

TABLES_SQL: Final = """
SELECT s.schemaname || '.' || s.relname AS table,
       coalesce(s.seq_scan, 0)::int8 AS seq_scan,
       coalesce(s.seq_tup_read, 0)::int8 AS seq_tup_read,
       coalesce(s.idx_scan, 0)::int8 AS idx_scan,
       s.n_live_tup::int8 AS live_tuples,
       c.relpages::int8 * current_setting('block_size')::int8 AS table_bytes
  FROM pg_stat_user_tables s
  JOIN pg_class c ON c.oid = s.relid
 WHERE s.schemaname = %(schema)s
   AND coalesce(s.seq_scan, 0) + coalesce(s.idx_scan, 0) > 0
 ORDER BY s.seq_tup_read DESC NULLS LAST, s.seq_scan DESC NULLS LAST, s.relname
 LIMIT %(limit)s
"""

INDEXES_SQL: Final = """
SELECT s.schemaname || '.' || s.indexrelname AS index,
       s.schemaname || '.' || s.relname AS table,
       s.idx_scan::int8 AS idx_scan,
       c.relpages::int8 * current_setting('block_size')::int8 AS index_bytes,
       i.indisunique AS unique, i.indisprimary AS primary
  FROM pg_stat_user_indexes s
  JOIN pg_index i ON i.indexrelid = s.indexrelid
  JOIN pg_class c ON c.oid = s.indexrelid
 WHERE s.schemaname = %(schema)s
 ORDER BY s.idx_scan, c.relpages DESC, s.indexrelname
 LIMIT %(limit)s
"""


@dataclass(frozen=True)
class TableScans:
    table: str  # schema.name
    seq_scan: int
    seq_tup_read: int  # rows read by sequential scans
    idx_scan: int
    live_tuples: int
    table_bytes: int  # estimate, from pg_class.relpages

    @property
    def index_share(self) -> float | None:
        """Index scans / all scans; None before any scan."""
        scans = self.seq_scan + self.idx_scan
        return self.idx_scan / scans if scans else None


@dataclass(frozen=True)
class IndexScans:
    index: str  # schema.name
    table: str
    idx_scan: int
    index_bytes: int  # estimate, from pg_class.relpages
    unique: bool  # backs uniqueness: not a candidate for dropping even when unused
    primary: bool


@dataclass(frozen=True)
class IndexUsage:
    tables: list[TableScans]
    least_used_indexes: list[IndexScans]

    def to_json(self) -> dict[str, Any]:
        return {
            "tables": [{**as_json(t), "index_share": t.index_share} for t in self.tables],
            "least_used_indexes": as_json(self.least_used_indexes),
        }


def collect(conn: psycopg.Connection[Any], *, schema: str, limit: int) -> IndexUsage:
    params = {"schema": schema, "limit": limit}
    return IndexUsage(
        tables=fetch(conn, TableScans, TABLES_SQL, params),
        least_used_indexes=fetch(conn, IndexScans, INDEXES_SQL, params),
    )
