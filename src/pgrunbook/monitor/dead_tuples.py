"""The schema's tables with the most dead tuples, and when autovacuum last cleaned them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import psycopg

from pgrunbook.rows import fetch

DEAD_TUPLES_SQL: Final = """
SELECT s.schemaname || '.' || s.relname AS table,
       s.n_live_tup::int8 AS live_tuples, s.n_dead_tup::int8 AS dead_tuples,
       (s.n_dead_tup::float8 / nullif(s.n_live_tup + s.n_dead_tup, 0)) AS dead_ratio,
       s.last_autovacuum, s.last_vacuum, s.autovacuum_count::int8 AS autovacuum_count
  FROM pg_stat_user_tables s
 WHERE s.schemaname = %(schema)s AND s.n_dead_tup > 0
 ORDER BY s.n_dead_tup DESC, s.relname
 LIMIT %(limit)s
"""


@dataclass(frozen=True)
class DeadTuples:
    table: str  # schema.name
    live_tuples: int
    dead_tuples: int
    dead_ratio: float | None  # dead / (live + dead)
    last_autovacuum: datetime | None
    last_vacuum: datetime | None
    autovacuum_count: int


def collect(conn: psycopg.Connection[Any], *, schema: str, limit: int) -> list[DeadTuples]:
    return fetch(conn, DeadTuples, DEAD_TUPLES_SQL, {"schema": schema, "limit": limit})
