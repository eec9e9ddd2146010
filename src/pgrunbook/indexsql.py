"""SQL for dropping and recreating an index online, and spotting builds in progress.

``pg_get_indexdef`` is the record of what an index was; recreating from it gives back the
same index (name, columns, operator classes, predicate), built ``CONCURRENTLY``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

import psycopg
from psycopg import sql

from pgrunbook.catalog import Index
from pgrunbook.rows import fetch

BUILDS_IN_PROGRESS_SQL: Final = """
SELECT p.index_relid::int8 AS index_oid
  FROM pg_stat_progress_create_index p
 WHERE p.index_relid <> 0
"""

_CREATE: Final = re.compile(r"^CREATE (UNIQUE )?INDEX ")


def drop_concurrently(schema: str, name: str) -> sql.Composed:
    return sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(schema, name))


def create_concurrently(definition: str) -> str:
    """``CREATE INDEX x ON ...`` (from pg_get_indexdef) as ``CREATE INDEX CONCURRENTLY ...``."""
    if not _CREATE.match(definition):
        raise ValueError(f"not an index definition: {definition[:60]!r}")
    return _CREATE.sub(lambda m: f"CREATE {m.group(1) or ''}INDEX CONCURRENTLY ", definition, 1)


def drop_sql(index: Index) -> str:
    return drop_concurrently(index.schema, index.name).as_string() + ";"


def recreate_sql(index: Index) -> str:
    return create_concurrently(index.definition) + ";"


def builds_in_progress(conn: psycopg.Connection[Any]) -> set[int]:
    """Oids of indexes a CREATE INDEX [CONCURRENTLY] or REINDEX is building right now."""
    return {int(str(row[0])) for row in conn.execute(BUILDS_IN_PROGRESS_SQL).fetchall()}


BUILDS_SQL: Final = """
SELECT p.pid, p.relid::int8 AS table_oid, nullif(p.index_relid, 0)::int8 AS index_oid,
       p.command, p.phase,
       ARRAY(SELECT l.relation::int8
               FROM pg_locks l
              WHERE l.pid = p.pid AND l.locktype = 'relation' AND l.granted
                AND l.relation IS NOT NULL) AS locked
  FROM pg_stat_progress_create_index p
 WHERE p.datid = (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())
"""


@dataclass(frozen=True)
class Build:
    """A CREATE INDEX [CONCURRENTLY] or REINDEX running in this database right now."""

    pid: int
    table_oid: int | None  # None (like index_oid, command, phase) without pg_read_all_stats
    index_oid: int | None
    command: str | None
    phase: str | None
    locked: list[int]  # relations the building session holds a lock on

    def builds(self, index: Index) -> bool:
        """Whether ``index`` (an invalid one) is this build's work in progress.

        REINDEX CONCURRENTLY reports the old index while it holds locks on the new
        ``_ccnew`` one; a role without pg_read_all_stats sees no oids at all, only that
        the session holds its lock on the table.
        """
        if index.oid == self.index_oid or index.oid in self.locked:
            return True
        return self.index_oid is None and index.table_oid in (self.table_oid, *self.locked)


def current_builds(conn: psycopg.Connection[Any]) -> list[Build]:
    """The index builds in progress in this database (pg_stat_progress_create_index)."""
    return fetch(conn, Build, BUILDS_SQL)
