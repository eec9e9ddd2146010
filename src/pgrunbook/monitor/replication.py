"""Replication: on a replica how far replay is behind; on a primary its standbys' lag.

On a replica, ``replay_lag_seconds`` is the time since the last replayed transaction was
committed on the primary: while the primary is idle it grows although nothing is behind,
so ``replay_lag_bytes`` (received but not yet replayed WAL) tells the two apart. A primary
without standbys has an empty ``standbys`` list, which is normal.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import psycopg

from pgrunbook.rows import as_json, fetch, fetch_one

ROLE_SQL: Final = "SELECT pg_is_in_recovery() AS in_recovery"

# pg_is_wal_replay_paused() raises outside recovery; CASE keeps this readable on a primary
# (where every column is NULL).
REPLICA_SQL: Final = """
SELECT pg_last_xact_replay_timestamp() AS last_replay_at,
       extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8
           AS replay_lag_seconds,
       pg_last_wal_receive_lsn()::text AS receive_lsn,
       pg_last_wal_replay_lsn()::text AS replay_lsn,
       pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::int8
           AS replay_lag_bytes,
       CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() END AS replay_paused
"""

STANDBYS_SQL: Final = """
SELECT r.pid, r.application_name, host(r.client_addr) AS client_addr, r.state, r.sync_state,
       r.sent_lsn::text AS sent_lsn, r.replay_lsn::text AS replay_lsn,
       pg_wal_lsn_diff(pg_current_wal_lsn(), r.replay_lsn)::int8 AS replay_lag_bytes,
       extract(epoch FROM r.write_lag)::float8 AS write_lag_seconds,
       extract(epoch FROM r.flush_lag)::float8 AS flush_lag_seconds,
       extract(epoch FROM r.replay_lag)::float8 AS replay_lag_seconds
  FROM pg_stat_replication r
 ORDER BY r.application_name, r.pid
"""


@dataclass(frozen=True)
class _Role:
    in_recovery: bool


@dataclass(frozen=True)
class ReplicaLag:
    last_replay_at: datetime | None  # commit time (on the primary) of the last replayed xact
    replay_lag_seconds: float | None  # now() - last_replay_at
    receive_lsn: str | None
    replay_lsn: str | None
    replay_lag_bytes: int | None  # WAL received but not yet replayed
    replay_paused: bool | None


@dataclass(frozen=True)
class Standby:
    pid: int
    application_name: str
    client_addr: str | None
    state: str | None  # streaming, catchup, ... (NULL without pg_read_all_stats)
    sync_state: str | None
    sent_lsn: str | None
    replay_lsn: str | None
    replay_lag_bytes: int | None  # current WAL position - replayed position
    write_lag_seconds: float | None
    flush_lag_seconds: float | None
    replay_lag_seconds: float | None


@dataclass(frozen=True)
class Replication:
    role: str  # primary or replica
    replica: ReplicaLag | None  # on a replica
    standbys: list[Standby]  # on a primary

    def to_json(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "replica": as_json(self.replica) if self.replica else None,
            "standbys": as_json(self.standbys),
        }


def replica_lag(conn: psycopg.Connection[Any]) -> ReplicaLag:
    return fetch_one(conn, ReplicaLag, REPLICA_SQL)


def standbys(conn: psycopg.Connection[Any]) -> list[Standby]:
    return fetch(conn, Standby, STANDBYS_SQL)


def collect(conn: psycopg.Connection[Any]) -> Replication:
    if fetch_one(conn, _Role, ROLE_SQL).in_recovery:
        return Replication("replica", replica_lag(conn), [])
    return Replication("primary", None, standbys(conn))
