"""Run the chosen maintenance: ``VACUUM (ANALYZE)`` per table, ``REINDEX INDEX CONCURRENTLY``.

Everything runs on an autocommit session (VACUUM and REINDEX CONCURRENTLY cannot run in a
transaction), one statement at a time. VACUUM takes SHARE UPDATE EXCLUSIVE, which conflicts
with DDL: it runs under a short ``lock_timeout`` and is retried (``with_lock_retries``) so it
never sits in the lock queue behind DDL, making the app's queries wait behind it. The
statement itself has no time limit. ``VACUUM FULL`` (ACCESS EXCLUSIVE for the whole
rewrite) runs only when asked.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import psycopg
from psycopg import sql

from pgrunbook.locking import LockPolicy, with_lock_retries
from pgrunbook.maintain.choose import Choice, IndexChoice, TableChoice
from pgrunbook.rows import fetch_one

TABLE_STATS_SQL: Final = """
SELECT coalesce(s.n_dead_tup, 0)::int8 AS dead_tuples,
       coalesce(s.n_live_tup, 0)::int8 AS live_tuples,
       pg_table_size(c.oid)::int8 AS table_bytes, pg_indexes_size(c.oid)::int8 AS index_bytes
  FROM pg_class c LEFT JOIN pg_stat_all_tables s ON s.relid = c.oid
 WHERE c.oid = %(oid)s
"""

INDEX_STATS_SQL: Final = """
SELECT pg_relation_size(c.oid)::int8 AS bytes, c.relfilenode::int8 AS relfilenode
  FROM pg_class c WHERE c.oid = %(name)s::regclass
"""

VACUUM: Final = sql.SQL("VACUUM (ANALYZE) {}")
VACUUM_FULL: Final = sql.SQL("VACUUM (FULL, ANALYZE) {}")
REINDEX: Final = sql.SQL("REINDEX INDEX CONCURRENTLY {}")

# VACUUM and REINDEX run for as long as they need; only the lock wait is bounded.
DEFAULT_POLICY: Final = LockPolicy(lock_timeout_ms=1_000, statement_timeout_ms=0)


@dataclass(frozen=True)
class TableStats:
    dead_tuples: int
    live_tuples: int
    table_bytes: int
    index_bytes: int


@dataclass(frozen=True)
class IndexStats:
    bytes: int
    relfilenode: int


@dataclass(frozen=True)
class TableResult:
    table: TableChoice
    sql: str
    before: TableStats
    after: TableStats
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            **self.table.to_json(),
            "sql": self.sql,
            "before": vars(self.before),
            "after": vars(self.after),
            "seconds": self.seconds,
        }


@dataclass(frozen=True)
class IndexResult:
    index: IndexChoice
    sql: str
    before: IndexStats
    after: IndexStats
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            **self.index.to_json(),
            "sql": self.sql,
            "bytes_before": self.before.bytes,
            "bytes_after": self.after.bytes,
            "seconds": self.seconds,
        }


@dataclass
class MaintainReport:
    tables: list[TableResult] = field(default_factory=list)
    indexes: list[IndexResult] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "tables": [t.to_json() for t in self.tables],
            "indexes": [i.to_json() for i in self.indexes],
        }


def vacuum_sql(table: TableChoice, *, full: bool = False) -> str:
    template = VACUUM_FULL if full else VACUUM
    return template.format(sql.Identifier(table.schema, table.name)).as_string()


def reindex_sql(index: IndexChoice) -> str:
    return REINDEX.format(sql.Identifier(index.schema, index.name)).as_string()


def table_stats(conn: psycopg.Connection[Any], oid: int) -> TableStats:
    return fetch_one(conn, TableStats, TABLE_STATS_SQL, {"oid": oid})


def index_stats(conn: psycopg.Connection[Any], index: IndexChoice) -> IndexStats:
    name = sql.Identifier(index.schema, index.name).as_string()
    return fetch_one(conn, IndexStats, INDEX_STATS_SQL, {"name": name})


def _timed(conn: psycopg.Connection[Any], statement: str, policy: LockPolicy, what: str) -> float:
    started = time.monotonic()
    with_lock_retries(conn, lambda: conn.execute(statement.encode()), policy, what=what)
    return time.monotonic() - started


def maintain(
    conn: psycopg.Connection[Any],
    choice: Choice,
    *,
    full: bool = False,
    policy: LockPolicy = DEFAULT_POLICY,
    on_start: Callable[[str], None] = lambda statement: None,
) -> MaintainReport:
    """Vacuum each chosen table, then rebuild each chosen index; ``conn`` must be autocommit.

    ``full=True`` runs ``VACUUM (FULL, ANALYZE)`` (the caller has had it confirmed).
    """
    if not conn.autocommit:
        raise ValueError("maintain needs an autocommit connection (VACUUM cannot run in one)")
    report = MaintainReport()
    for table in choice.tables:
        statement = vacuum_sql(table, full=full)
        before = table_stats(conn, table.oid)
        on_start(statement)
        seconds = _timed(conn, statement, policy, f"vacuuming {table.qualified}")
        report.tables.append(
            TableResult(table, statement, before, table_stats(conn, table.oid), seconds)
        )
    for index in choice.indexes:
        statement = reindex_sql(index)
        before_index = index_stats(conn, index)
        on_start(statement)
        seconds = _timed(conn, statement, policy, f"rebuilding {index.qualified}")
        report.indexes.append(
            IndexResult(index, statement, before_index, index_stats(conn, index), seconds)
        )
    return report
