"""Size snapshots: the database's size over time, for the quarterly storage-growth review.

Every scheduled run (``pgrunbook run``, or a pg_cron job installed by ``pgrunbook schedule``)
appends one row to ``pgrunbook.snapshots``: when, which cadence, the database's size and its
tables' sizes. The quarterly review compares the newest snapshot with older ones to report how
fast storage grows against the plan's limit. The INSERT is one plain SQL statement so that a
pg_cron job can run it as is (``snapshot_statement``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import psycopg
from psycopg import sql

from pgrunbook.rows import fetch

TABLE_SQL: Final = """
CREATE SCHEMA IF NOT EXISTS pgrunbook;
CREATE TABLE IF NOT EXISTS pgrunbook.snapshots (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    taken_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    cadence text NOT NULL,
    source text NOT NULL,
    database_bytes bigint NOT NULL,
    tables jsonb NOT NULL
);
"""

# One statement, no parameters: pg_cron runs it verbatim. ``tables`` maps each table of the
# schema to its total size (heap + indexes + TOAST).
INSERT_SQL: Final = sql.SQL(
    "INSERT INTO pgrunbook.snapshots (cadence, source, database_bytes, tables) "
    "SELECT {cadence}, {source}, pg_database_size(current_database()), "
    "COALESCE((SELECT jsonb_object_agg(c.relname, pg_total_relation_size(c.oid)) "
    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = {schema} AND c.relkind IN ('r', 'p')), '{{}}'::jsonb)"
)

HISTORY_SQL: Final = """
SELECT taken_at, cadence, source, database_bytes
  FROM pgrunbook.snapshots
 WHERE to_regclass('pgrunbook.snapshots') IS NOT NULL
 ORDER BY taken_at, id
"""

EXISTS_SQL: Final = "SELECT to_regclass('pgrunbook.snapshots') IS NOT NULL"


@dataclass(frozen=True)
class Snapshot:
    taken_at: datetime
    cadence: str
    source: str  # "pgrunbook run" or "pg_cron"
    database_bytes: int


def snapshot_statement(schema: str, cadence: str, source: str) -> sql.Composed:
    """The INSERT that records one snapshot of ``schema`` (runnable by pg_cron as is)."""
    return INSERT_SQL.format(
        cadence=sql.Literal(cadence), source=sql.Literal(source), schema=sql.Literal(schema)
    )


def ensure(conn: psycopg.Connection[Any]) -> None:
    """Create ``pgrunbook.snapshots`` if it is not there yet."""
    with conn.transaction():
        conn.execute(TABLE_SQL.encode())


def record(conn: psycopg.Connection[Any], schema: str, cadence: str, source: str) -> None:
    """Append one snapshot (creating the table on first use)."""
    ensure(conn)
    with conn.transaction():
        conn.execute(snapshot_statement(schema, cadence, source))


def history(conn: psycopg.Connection[Any]) -> list[Snapshot]:
    """All snapshots, oldest first; empty when none was ever taken."""
    exists = conn.execute(EXISTS_SQL).fetchone()
    if not exists or not exists[0]:
        return []
    return fetch(conn, Snapshot, HISTORY_SQL)
