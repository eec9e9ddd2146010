"""What every check gets: a read-only connection, the server's facts, the catalog snapshot,
and the app's relations (from ``schema.prisma`` in Prisma mode, else foreign keys plus the
ones inferred from column names)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any, Final, TypeVar

import psycopg
from psycopg import sql

from pgrunbook.catalog import Catalog
from pgrunbook.locking import timeouts
from pgrunbook.prisma.mode import PrismaMode
from pgrunbook.prisma.model import PrismaSchema
from pgrunbook.prisma.relations import Declaration, declarations
from pgrunbook.profile import Profile
from pgrunbook.relations import Relation, all_relations, with_declared
from pgrunbook.rows import fetch, fetch_one
from pgrunbook.serverinfo import ServerInfo

R = TypeVar("R")
Query = str | sql.SQL | sql.Composed

STATS_WINDOW_SQL: Final = """
SELECT d.stats_reset, pg_postmaster_start_time() AS started_at, now() AS now
  FROM pg_stat_database d
 WHERE d.datname = current_database()
"""


@dataclass(frozen=True)
class StatsWindow:
    """Since when the cumulative statistics (idx_scan, seq_scan, ...) have been counting.

    The later of the last reset and the server start: PostgreSQL 15+ keeps counters over a
    clean restart, but a crash, an older server or a Neon compute restart loses them, so
    the server start is the safe lower bound.
    """

    stats_reset: datetime | None
    started_at: datetime
    now: datetime

    @property
    def since(self) -> datetime:
        return max(t for t in (self.stats_reset, self.started_at) if t is not None)

    @property
    def age(self) -> timedelta:
        return self.now - self.since

    def to_json(self) -> dict[str, Any]:
        return {
            "stats_reset": self.stats_reset,
            "server_started_at": self.started_at,
            "collecting_since": self.since,
            "collecting_seconds": round(self.age.total_seconds()),
        }


@dataclass
class Context:
    conn: psycopg.Connection[Any]
    schema: str
    server: ServerInfo
    catalog: Catalog
    stats: StatsWindow
    profile: Profile
    plan_limit_bytes: int | None = None
    prisma: PrismaMode | None = None  # None: not looked for (library callers)

    @property
    def prisma_schema(self) -> PrismaSchema | None:
        return self.prisma.schema if self.prisma is not None else None

    @cached_property
    def declarations(self) -> list[Declaration] | None:
        """The schema.prisma's ``@relation``s matched to the catalog; None without a schema."""
        schema = self.prisma_schema
        return declarations(schema, self.catalog) if schema is not None else None

    @cached_property
    def relations(self) -> list[Relation]:
        """The relations checks judge: with a Prisma schema, exactly those it declares (source
        ``prisma``) plus foreign keys it does not declare; else foreign keys plus the ones
        inferred from ``<table>Id`` / ``<table>_id`` columns."""
        if self.declarations is None:
            return all_relations(self.catalog)
        declared = [d.relation for d in self.declarations if d.relation is not None]
        return with_declared(self.catalog, declared)

    @property
    def version_num(self) -> int:
        return self.server.version_num

    def extension_schema(self, name: str) -> str | None:
        """The schema ``name`` is installed in, or None when it is not installed."""
        for ext in self.server.extensions:
            if ext.name == name and ext.installed:
                return ext.installed_schema
        return None

    def rows(self, row: type[R], query: Query, params: Mapping[str, Any] | None = None) -> list[R]:
        return fetch(self.conn, row, query, params)

    @contextmanager
    def bounded(self, statement_timeout_ms: int) -> Iterator[None]:
        """Run the block in its own transaction under a statement timeout."""
        with (
            self.conn.transaction(),
            timeouts(self.conn, lock_timeout_ms=1000, statement_timeout_ms=statement_timeout_ms),
        ):
            yield


def stats_window(conn: psycopg.Connection[Any]) -> StatsWindow:
    return fetch_one(conn, StatsWindow, STATS_WINDOW_SQL)
