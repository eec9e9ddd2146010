"""Sessions idle in a transaction: they hold their locks and snapshot (which keeps VACUUM
from removing dead rows) while the client does nothing. Longest idle first."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import psycopg

from pgrunbook.rows import fetch

# Durations run to clock_timestamp(), read after the activity snapshot: never negative.
IDLE_IN_TRANSACTION_SQL: Final = """
SELECT a.pid, a.usename AS user, a.application_name, host(a.client_addr) AS client_addr,
       a.state,
       extract(epoch FROM clock_timestamp() - a.state_change)::float8 AS idle_seconds,
       extract(epoch FROM clock_timestamp() - a.xact_start)::float8 AS transaction_seconds,
       left(a.query, %(query_chars)s) AS last_query
  FROM pg_stat_activity a
 WHERE a.state IN ('idle in transaction', 'idle in transaction (aborted)')
   AND a.backend_type = 'client backend'
   AND a.datname = current_database()
   AND a.pid <> pg_backend_pid()
 ORDER BY a.state_change, a.pid
 LIMIT %(limit)s
"""


@dataclass(frozen=True)
class IdleSession:
    pid: int
    user: str | None
    application_name: str
    client_addr: str | None
    state: str  # 'idle in transaction' or 'idle in transaction (aborted)'
    idle_seconds: float  # since its last statement ended
    transaction_seconds: float  # since its transaction started
    last_query: str  # the last statement it ran, truncated


def collect(conn: psycopg.Connection[Any], *, limit: int, query_chars: int) -> list[IdleSession]:
    return fetch(
        conn, IdleSession, IDLE_IN_TRANSACTION_SQL, {"limit": limit, "query_chars": query_chars}
    )
