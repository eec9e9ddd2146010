"""One snapshot of a live database: every section, read through one read-only session."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import psycopg
from psycopg import errors

from pgrunbook.connect import connect
from pgrunbook.dsn import ConnInfo
from pgrunbook.errors import ConfigError, ConnectError, PgRunbookError
from pgrunbook.locking import read_only_transaction
from pgrunbook.monitor import (
    cache,
    connections,
    dead_tuples,
    idle_in_transaction,
    index_usage,
    locks,
    long_running,
    replication,
    statements,
)
from pgrunbook.monitor.cache import CacheRatios
from pgrunbook.monitor.connections import Connections
from pgrunbook.monitor.dead_tuples import DeadTuples
from pgrunbook.monitor.idle_in_transaction import IdleSession
from pgrunbook.monitor.index_usage import IndexUsage
from pgrunbook.monitor.locks import LockTree
from pgrunbook.monitor.long_running import LongQuery
from pgrunbook.monitor.replication import Replication
from pgrunbook.monitor.statements import Statements
from pgrunbook.rows import as_json, fetch_one
from pgrunbook.serverinfo import ServerInfo, probe

# No monitoring query may run away, nor queue for a lock (a queued lock request would make
# every later session wait behind it): it gives up instead.
STATEMENT_TIMEOUT_MS: Final = 10_000
LOCK_TIMEOUT_MS: Final = 1_000
# pg_locks.waitstart, used by the lock tree, exists since PostgreSQL 14.
MIN_SERVER_VERSION: Final = 140000

PID_SQL: Final = "SELECT pg_backend_pid() AS pid"

NOW_SQL: Final = "SELECT now() AS taken_at"


def _first_line(exc: psycopg.Error) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class MonitorError(PgRunbookError):
    """A snapshot could not be taken (a query timed out or was cancelled)."""


@dataclass(frozen=True)
class Thresholds:
    long_query_seconds: float = 60.0  # an active statement this old is long-running
    top: int = 10  # rows per list (connections by application, long queries, tables, ...)
    query_chars: int = 500  # query text is cut to this many characters
    statements_min_calls: int = 5  # statements run fewer times are no mean-time outliers


@dataclass(frozen=True)
class _Session:
    pid: int


@dataclass(frozen=True)
class _Now:
    taken_at: datetime


@dataclass
class Snapshot:
    taken_at: datetime
    server: ServerInfo
    schema: str
    thresholds: Thresholds
    monitor_pid: int  # this session, left out of the activity lists
    connections: Connections
    long_running: list[LongQuery]
    idle_in_transaction: list[IdleSession]
    locks: LockTree
    cache: CacheRatios
    dead_tuples: list[DeadTuples]
    index_usage: IndexUsage
    replication: Replication
    statements: Statements

    def to_json(self) -> dict[str, Any]:
        """The JSON document (docs/monitor.md lists every key)."""
        return {
            "taken_at": self.taken_at.isoformat(),
            "server": {
                "endpoint": self.server.endpoint,
                "database": self.server.database.name,
                "schema": self.schema,
                "version": self.server.version,
                "version_num": self.server.version_num,
                "in_recovery": self.replication.role == "replica",
                "started_at": self.server.started_at.isoformat(),
                "monitor_pid": self.monitor_pid,
            },
            "connections": self.connections.to_json(),
            "long_running": as_json(self.long_running),
            "idle_in_transaction": as_json(self.idle_in_transaction),
            "locks": self.locks.to_json(),
            "cache": self.cache.to_json(),
            "dead_tuples": as_json(self.dead_tuples),
            "index_usage": self.index_usage.to_json(),
            "replication": self.replication.to_json(),
            "statements": self.statements.to_json(),
        }


@dataclass
class Monitor:
    """A session that takes snapshots (``--watch`` takes one per refresh), each in one
    read-only transaction under ``SET LOCAL`` timeouts: nothing is left on the session,
    which through a transaction-mode pooler is shared with the app's next transaction."""

    conn: psycopg.Connection[Any]
    info: ConnInfo
    schema: str
    thresholds: Thresholds

    def snapshot(self) -> Snapshot:
        try:
            with read_only_transaction(
                self.conn,
                lock_timeout_ms=LOCK_TIMEOUT_MS,
                statement_timeout_ms=STATEMENT_TIMEOUT_MS,
            ):
                return self._take()
        except (errors.QueryCanceled, errors.LockNotAvailable) as exc:
            raise MonitorError(
                f"a monitoring query gave up after its timeout ({_first_line(exc)})",
                "the server is overloaded or its catalogs are locked; try again",
            ) from None
        except psycopg.OperationalError as exc:
            if not self.conn.broken:
                raise
            raise ConnectError(
                f"lost the connection to {self.info.display()}: {_first_line(exc)}",
                "check that the server is up and run monitor again",
            ) from None

    def _take(self) -> Snapshot:
        conn, limits = self.conn, self.thresholds
        top, chars = limits.top, limits.query_chars
        pid = fetch_one(conn, _Session, PID_SQL).pid  # per transaction: a pooler may switch
        server = probe(conn, info=self.info, schema=self.schema)
        if not server.schema.exists:
            raise ConfigError(
                f"schema {self.schema!r} does not exist in database {server.database.name!r}",
                "pass --schema, or ?schema= in the URL, naming an existing schema",
            )
        taken_at = fetch_one(conn, _Now, NOW_SQL).taken_at
        return Snapshot(
            taken_at=taken_at,
            server=server,
            schema=self.schema,
            thresholds=limits,
            monitor_pid=pid,
            connections=connections.collect(conn, limit=top),
            long_running=long_running.collect(
                conn, min_seconds=limits.long_query_seconds, limit=top, query_chars=chars
            ),
            idle_in_transaction=idle_in_transaction.collect(conn, limit=top, query_chars=chars),
            locks=locks.collect(conn, query_chars=chars),
            cache=cache.collect(conn, schema=self.schema),
            dead_tuples=dead_tuples.collect(conn, schema=self.schema, limit=top),
            index_usage=index_usage.collect(conn, schema=self.schema, limit=top),
            replication=replication.collect(conn),
            statements=statements.collect(
                conn,
                server,
                limit=top,
                min_calls=limits.statements_min_calls,
                query_chars=chars,
            ),
        )


@contextmanager
def open_monitor(
    info: ConnInfo, *, schema: str | None = None, thresholds: Thresholds | None = None
) -> Iterator[Monitor]:
    """Connect for one or more snapshots (each read-only, under a statement and a lock
    timeout)."""
    with connect(info, autocommit=True) as conn:
        version = conn.info.server_version
        if version < MIN_SERVER_VERSION:
            raise ConfigError(
                f"monitor needs PostgreSQL {MIN_SERVER_VERSION // 10000} or later, "
                f"the server is {version // 10000}",
                "upgrade the server",
            )
        yield Monitor(conn, info, schema or info.schema, thresholds or Thresholds())


def snapshot(
    info: ConnInfo, *, schema: str | None = None, thresholds: Thresholds | None = None
) -> Snapshot:
    """Take one snapshot of the database behind ``info`` (read-only).

    ``schema`` (default: the URL's ``?schema=``, else ``public``) scopes the cache, dead
    tuple and index sections; the activity sections cover the whole database.
    """
    with open_monitor(info, schema=schema, thresholds=thresholds) as monitor:
        return monitor.snapshot()
