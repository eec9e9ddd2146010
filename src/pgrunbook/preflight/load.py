"""The database's current load, read in short read-only transactions (pooler-safe): sessions,
transactions per second over a few seconds, the oldest open transaction, replication lag."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import psycopg

from pgrunbook.locking import read_only_transaction
from pgrunbook.rows import fetch_one

SESSIONS_SQL: Final = """
SELECT count(*) FILTER (WHERE a.state = 'active' AND a.pid <> pg_backend_pid())::int AS active,
       count(*)::int AS connections,
       current_setting('max_connections')::int AS max_connections,
       COALESCE(max(EXTRACT(epoch FROM clock_timestamp() - a.xact_start))
                FILTER (WHERE a.pid <> pg_backend_pid()), 0)::float8 AS oldest_xact_seconds,
       (array_agg(a.pid ORDER BY a.xact_start) FILTER (
            WHERE a.pid <> pg_backend_pid() AND a.xact_start IS NOT NULL))[1] AS oldest_pid
  FROM pg_stat_activity a
 WHERE a.backend_type = 'client backend'
"""

XACTS_SQL: Final = """
SELECT (xact_commit + xact_rollback)::int8 AS xacts, clock_timestamp() AS at
  FROM pg_stat_database WHERE datname = current_database()
"""

# replay_lag is NULL on an idle replica that has caught up: no lag.
REPLICATION_SQL: Final = """
SELECT count(*)::int AS replicas,
       COALESCE(max(EXTRACT(epoch FROM replay_lag)), 0)::float8 AS max_lag_seconds
  FROM pg_stat_replication
"""


@dataclass(frozen=True)
class Sessions:
    active: int  # other sessions running a statement now
    connections: int
    max_connections: int
    oldest_xact_seconds: float  # the oldest open transaction of another session
    oldest_pid: int | None


@dataclass(frozen=True)
class _Xacts:
    xacts: int
    at: Any


@dataclass(frozen=True)
class Replication:
    replicas: int
    max_lag_seconds: float


@dataclass(frozen=True)
class Load:
    sessions: Sessions
    transactions_per_second: float
    sample_seconds: float
    replication: Replication


def _read(conn: psycopg.Connection[Any], read: Callable[[], Any]) -> Any:
    with read_only_transaction(conn, lock_timeout_ms=1_000, statement_timeout_ms=10_000):
        return read()


def measure_load(
    conn: psycopg.Connection[Any],
    sample_seconds: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Load:
    """Read the load; the transaction rate is the change of the database's commit and
    rollback counters over ``sample_seconds``, ``conn`` idle in between."""
    first: _Xacts = _read(conn, lambda: fetch_one(conn, _Xacts, XACTS_SQL))
    sleep(sample_seconds)
    second: _Xacts = _read(conn, lambda: fetch_one(conn, _Xacts, XACTS_SQL))
    seconds = max((second.at - first.at).total_seconds(), 1e-3)
    sessions: Sessions = _read(conn, lambda: fetch_one(conn, Sessions, SESSIONS_SQL))
    replication: Replication = _read(conn, lambda: fetch_one(conn, Replication, REPLICATION_SQL))
    # the first read's own commit falls inside the window: not the app's
    rate = max(second.xacts - first.xacts - 1, 0) / seconds
    return Load(sessions, rate, seconds, replication)
