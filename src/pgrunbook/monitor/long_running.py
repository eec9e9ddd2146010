"""Long-running queries: client sessions of this database whose current statement has been
running for at least the threshold (``--long-query``), longest first."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import psycopg

from pgrunbook.rows import fetch

# Durations run to clock_timestamp(), read after the activity snapshot, so never negative;
# now() is the start of this statement, so a query that began after it is not counted.
LONG_RUNNING_SQL: Final = """
SELECT a.pid, a.usename AS user, a.application_name, host(a.client_addr) AS client_addr,
       a.state, a.wait_event_type, a.wait_event,
       extract(epoch FROM clock_timestamp() - a.query_start)::float8 AS duration_seconds,
       extract(epoch FROM clock_timestamp() - a.xact_start)::float8 AS transaction_seconds,
       left(a.query, %(query_chars)s) AS query
  FROM pg_stat_activity a
 WHERE a.state = 'active'
   AND a.backend_type = 'client backend'
   AND a.datname = current_database()
   AND a.pid <> pg_backend_pid()
   AND a.query_start <= now() - make_interval(secs => %(min_seconds)s)
 ORDER BY a.query_start, a.pid
 LIMIT %(limit)s
"""


@dataclass(frozen=True)
class LongQuery:
    pid: int
    user: str | None
    application_name: str
    client_addr: str | None  # None for a Unix socket
    state: str
    wait_event_type: str | None  # Lock, IO, ... while it waits; None while it runs on CPU
    wait_event: str | None
    duration_seconds: float  # since the statement started
    transaction_seconds: float | None  # since its transaction started
    query: str  # truncated


def collect(
    conn: psycopg.Connection[Any], *, min_seconds: float, limit: int, query_chars: int
) -> list[LongQuery]:
    params = {"min_seconds": min_seconds, "limit": limit, "query_chars": query_chars}
    return fetch(conn, LongQuery, LONG_RUNNING_SQL, params)
