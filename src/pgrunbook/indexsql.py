"""SQL for dropping and recreating an index online, and spotting builds in progress.

``pg_get_indexdef`` is the record of what an index was; recreating from it gives back the
same index (name, columns, operator classes, predicate), built ``CONCURRENTLY``.
"""

from __future__ import annotations

import re
from typing import Any, Final

import psycopg
from psycopg import sql

from pgrunbook.catalog import Index

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
