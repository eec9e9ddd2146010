"""Cache hit ratios: blocks found in shared buffers against blocks read from outside them
(the OS cache or the disk), for the whole database and for the schema's tables and indexes.

The counters are cumulative since the last statistics reset; a ratio is None while nothing
has been counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import psycopg

from pgrunbook.rows import fetch

CACHE_SQL: Final = """
SELECT 'database' AS scope, d.blks_hit::int8 AS hit, d.blks_read::int8 AS read
  FROM pg_stat_database d
 WHERE d.datname = current_database()
UNION ALL
SELECT 'tables', coalesce(sum(t.heap_blks_hit), 0)::int8, coalesce(sum(t.heap_blks_read), 0)::int8
  FROM pg_statio_user_tables t
 WHERE t.schemaname = %(schema)s
UNION ALL
SELECT 'indexes', coalesce(sum(i.idx_blks_hit), 0)::int8, coalesce(sum(i.idx_blks_read), 0)::int8
  FROM pg_statio_user_indexes i
 WHERE i.schemaname = %(schema)s
"""


@dataclass(frozen=True)
class HitRatio:
    scope: str  # database, tables, indexes
    hit: int  # blocks found in shared buffers
    read: int  # blocks read from outside them

    @property
    def ratio(self) -> float | None:
        total = self.hit + self.read
        return self.hit / total if total else None

    def to_json(self) -> dict[str, Any]:
        return {"hit": self.hit, "read": self.read, "ratio": self.ratio}


@dataclass(frozen=True)
class CacheRatios:
    database: HitRatio
    tables: HitRatio
    indexes: HitRatio

    def to_json(self) -> dict[str, Any]:
        return {
            "database": self.database.to_json(),
            "tables": self.tables.to_json(),
            "indexes": self.indexes.to_json(),
        }


def collect(conn: psycopg.Connection[Any], *, schema: str) -> CacheRatios:
    rows = {row.scope: row for row in fetch(conn, HitRatio, CACHE_SQL, {"schema": schema})}
    return CacheRatios(rows["database"], rows["tables"], rows["indexes"])
