"""Connections: client backends of this database by state and by application, and the
server's total against ``max_connections``.

The counts by state and by application leave out monitor's own session; the server total
counts every client backend (it is what ``max_connections`` limits), this one included.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import psycopg

from pgrunbook.rows import as_json, fetch, fetch_one

# Without pg_read_all_stats, other roles' sessions show no backend_type and no state: a
# session with a database and a role is then taken for a client (background processes have
# neither; a hidden parallel worker is the exception). reserved_connections exists since
# PostgreSQL 16 (missing_ok: NULL before).
LIMITS_SQL: Final = """
SELECT current_setting('max_connections')::int AS max_connections,
       current_setting('superuser_reserved_connections')::int AS superuser_reserved,
       coalesce(current_setting('reserved_connections', true), '0')::int AS reserved,
       count(*) FILTER (WHERE coalesce(a.backend_type = 'client backend',
                                       a.datname IS NOT NULL AND a.usesysid IS NOT NULL)
                       )::int AS server_total,
       count(*) FILTER (WHERE coalesce(a.backend_type = 'client backend', a.usesysid IS NOT NULL)
                          AND a.datname = current_database())::int AS database_total
  FROM pg_stat_activity a
"""

BY_STATE_SQL: Final = """
SELECT coalesce(a.state, 'unknown') AS state, count(*)::int AS count
  FROM pg_stat_activity a
 WHERE coalesce(a.backend_type = 'client backend', a.usesysid IS NOT NULL)
   AND a.datname = current_database()
   AND a.pid <> pg_backend_pid()
 GROUP BY 1
 ORDER BY 2 DESC, 1
"""

BY_APPLICATION_SQL: Final = """
SELECT a.application_name, count(*)::int AS count,
       count(*) FILTER (WHERE a.state = 'active')::int AS active,
       count(*) FILTER (WHERE a.state = 'idle')::int AS idle,
       count(*) FILTER (WHERE a.state LIKE 'idle in transaction%%')::int AS idle_in_transaction
  FROM pg_stat_activity a
 WHERE coalesce(a.backend_type = 'client backend', a.usesysid IS NOT NULL)
   AND a.datname = current_database()
   AND a.pid <> pg_backend_pid()
 GROUP BY 1
 ORDER BY 2 DESC, 1
 LIMIT %(limit)s
"""


@dataclass(frozen=True)
class _Limits:
    max_connections: int
    superuser_reserved: int
    reserved: int
    server_total: int
    database_total: int


@dataclass(frozen=True)
class StateCount:
    state: str  # active, idle, idle in transaction, ... ('unknown' when hidden from us)
    count: int


@dataclass(frozen=True)
class ApplicationCount:
    application_name: str  # '' when the client set none
    count: int
    active: int
    idle: int
    idle_in_transaction: int


@dataclass(frozen=True)
class Connections:
    max_connections: int
    reserved: int  # superuser_reserved_connections + reserved_connections
    server_total: int  # client backends on the whole server, monitor's own included
    database_total: int  # client backends in this database, monitor's own included
    by_state: list[StateCount]
    by_application: list[ApplicationCount]

    @property
    def available(self) -> int:
        """Connections an ordinary role may still open."""
        return max(self.max_connections - self.reserved - self.server_total, 0)

    @property
    def usage_ratio(self) -> float:
        return self.server_total / self.max_connections if self.max_connections else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "max_connections": self.max_connections,
            "reserved": self.reserved,
            "server_total": self.server_total,
            "database_total": self.database_total,
            "available": self.available,
            "usage_ratio": self.usage_ratio,
            "by_state": as_json(self.by_state),
            "by_application": as_json(self.by_application),
        }


def collect(conn: psycopg.Connection[Any], *, limit: int) -> Connections:
    limits = fetch_one(conn, _Limits, LIMITS_SQL)
    return Connections(
        max_connections=limits.max_connections,
        reserved=limits.superuser_reserved + limits.reserved,
        server_total=limits.server_total,
        database_total=limits.database_total,
        by_state=fetch(conn, StateCount, BY_STATE_SQL),
        by_application=fetch(conn, ApplicationCount, BY_APPLICATION_SQL, {"limit": limit}),
    )
