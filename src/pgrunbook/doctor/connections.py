"""Idle sessions: list them, and terminate the ones that may go (runbook 7, connections).

The runbook kills every session idle for ten minutes except the owner's. Here the rules
are stricter and the checks happen where they cannot go stale:

- only client sessions in state ``idle`` whose state has not changed for longer than the
  limit, of the current database (or every database, when asked);
- never the current session; never a session of a superuser or of the database's owner,
  unless that user is named (``users``), and then only the named users' sessions;
- sessions ``idle in transaction`` are listed apart and never terminated (that would roll
  back their work); ``idle_in_transaction_session_timeout`` is the tool for those;
- each ``pg_terminate_backend`` runs in a statement that checks again that the session
  (same pid, same start time) is still idle past the limit, so a session that became
  active in the meantime is not killed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

import psycopg
from psycopg import errors
from psycopg.rows import class_row

# How long pg_terminate_backend waits for the session to exit before it reports back.
TERMINATE_WAIT_MS: Final = 5_000

IDLE_STATES: Final = ("idle", "idle in transaction", "idle in transaction (aborted)")

SESSIONS_SQL: Final = """
SELECT a.pid, a.usename::text AS user, a.datname::text AS database,
       a.application_name, host(a.client_addr) AS client_addr, a.state,
       a.backend_start, a.state_change,
       extract(epoch FROM now() - a.state_change)::float8 AS idle_seconds,
       coalesce(r.rolsuper, false) AS superuser,
       a.usesysid = d.datdba AS database_owner
  FROM pg_stat_activity a
  JOIN pg_database d ON d.oid = a.datid
  LEFT JOIN pg_roles r ON r.oid = a.usesysid
 WHERE a.backend_type = 'client backend'
   AND a.pid <> pg_backend_pid()
   AND a.state = ANY(%(states)s)
   AND a.state_change < now() - make_interval(secs => %(seconds)s)
   AND (%(all_databases)s OR a.datname = current_database())
 ORDER BY a.state_change, a.pid
"""

# The runbook's "SELECT COUNT(*), state FROM pg_stat_activity GROUP BY state", for client
# sessions; sessions of other roles whose details this role may not see count as hidden.
STATES_SQL: Final = """
SELECT coalesce(a.state,
                CASE WHEN a.query = '<insufficient privilege>' THEN 'hidden' END,
                'unknown') AS state,
       count(*)::int AS sessions
  FROM pg_stat_activity a
 WHERE (a.backend_type = 'client backend' OR a.query = '<insufficient privilege>')
   AND a.datid IS NOT NULL
   AND (%(all_databases)s OR a.datname = current_database())
 GROUP BY 1
 ORDER BY 2 DESC, 1
"""

# Same pid, same session (start time), still idle, still past the limit: then terminate.
TERMINATE_SQL: Final = """
SELECT pg_terminate_backend(a.pid, %(wait_ms)s) AS exited
  FROM pg_stat_activity a
 WHERE a.pid = %(pid)s
   AND a.pid <> pg_backend_pid()
   AND a.backend_start = %(backend_start)s
   AND a.state = 'idle'
   AND a.state_change < now() - make_interval(secs => %(seconds)s)
"""

Status = Literal["eligible", "terminated", "skipped"]

# Why a session is kept unless its user is named with --user.
PROTECTED_SUPERUSER: Final = "superuser"
PROTECTED_OWNER: Final = "database owner"


@dataclass(frozen=True)
class Session:
    pid: int
    user: str | None
    database: str | None
    application_name: str | None
    client_addr: str | None
    state: str
    backend_start: datetime
    state_change: datetime
    idle_seconds: float
    superuser: bool
    database_owner: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "user": self.user,
            "database": self.database,
            "application_name": self.application_name,
            "client_addr": self.client_addr,
            "state": self.state,
            "idle_seconds": round(self.idle_seconds, 3),
            "backend_start": self.backend_start,
            "superuser": self.superuser,
            "database_owner": self.database_owner,
        }


@dataclass
class IdleSession:
    """An idle session and what happens (or happened) to it."""

    session: Session
    status: Status
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {**self.session.to_json(), "status": self.status, "reason": self.reason}


@dataclass(frozen=True)
class _StateCount:
    state: str
    sessions: int


@dataclass
class IdleReport:
    database: str
    limit_seconds: float
    all_databases: bool
    users: tuple[str, ...]
    states: dict[str, int]
    idle: list[IdleSession] = field(default_factory=list)
    idle_in_transaction: list[Session] = field(default_factory=list)

    @property
    def eligible(self) -> list[IdleSession]:
        return [s for s in self.idle if s.status == "eligible"]

    @property
    def terminated(self) -> list[int]:
        return [s.session.pid for s in self.idle if s.status == "terminated"]

    @property
    def protected(self) -> list[IdleSession]:
        """Kept because of who they belong to (a superuser, the database owner)."""
        kept = (PROTECTED_SUPERUSER, PROTECTED_OWNER)
        return [s for s in self.idle if s.status == "skipped" and s.reason in kept]

    @property
    def hidden(self) -> int:
        return self.states.get("hidden", 0)

    def to_json(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "all_databases": self.all_databases,
            "limit_seconds": self.limit_seconds,
            "users": list(self.users),
            "states": self.states,
            "hidden_sessions": self.hidden,
            "idle": [s.to_json() for s in self.idle],
            "idle_in_transaction": [s.to_json() for s in self.idle_in_transaction],
            "terminated": self.terminated,
        }


def _protected(session: Session, users: tuple[str, ...]) -> str | None:
    """Why this session may not be terminated (None: it may)."""
    if session.user in users:
        return None
    if session.superuser:
        return PROTECTED_SUPERUSER
    if session.database_owner:
        return PROTECTED_OWNER
    return None


def find_idle(
    conn: psycopg.Connection[Any],
    limit_seconds: float,
    *,
    users: Iterable[str] = (),
    all_databases: bool = False,
) -> IdleReport:
    """Idle sessions older than the limit, each marked eligible or skipped (with why).

    With ``users``, only those users' sessions are listed, and they are eligible even when
    the user is a superuser or the database's owner.
    """
    named = tuple(users)
    params = {"seconds": limit_seconds, "all_databases": all_databases}
    states = conn.cursor(row_factory=class_row(_StateCount)).execute(STATES_SQL, params)
    database = conn.execute("SELECT current_database()").fetchone()
    assert database is not None
    report = IdleReport(
        database=str(database[0]),
        limit_seconds=limit_seconds,
        all_databases=all_databases,
        users=named,
        states={row.state: row.sessions for row in states.fetchall()},
    )
    cur = conn.cursor(row_factory=class_row(Session))
    for session in cur.execute(SESSIONS_SQL, {**params, "states": list(IDLE_STATES)}):
        if named and session.user not in named:
            continue
        if session.state != "idle":
            report.idle_in_transaction.append(session)
            continue
        reason = _protected(session, named)
        report.idle.append(IdleSession(session, "skipped" if reason else "eligible", reason))
    return report


def terminate_sql(conn: psycopg.Connection[Any], report: IdleReport, entry: IdleSession) -> str:
    """The exact statement that terminates ``entry`` (for --dry-run)."""
    return psycopg.ClientCursor(conn).mogrify(TERMINATE_SQL, _params(report, entry)).strip()


def _params(report: IdleReport, entry: IdleSession) -> dict[str, Any]:
    return {
        "pid": entry.session.pid,
        "backend_start": entry.session.backend_start,
        "seconds": report.limit_seconds,
        "wait_ms": TERMINATE_WAIT_MS,
    }


def _refusal(exc: errors.InsufficientPrivilege) -> str:
    detail = exc.diag.message_detail
    return (
        f"not allowed: {exc.diag.message_primary}"
        + (f" ({detail.rstrip('.')})" if detail else "")
        + "; terminating needs superuser, the pg_signal_backend role, or the same role"
    )


def terminate(conn: psycopg.Connection[Any], report: IdleReport) -> IdleReport:
    """Terminate every eligible session, one statement each, re-checked as it runs."""
    for entry in report.eligible:
        try:
            row = conn.execute(TERMINATE_SQL, _params(report, entry)).fetchone()
        except errors.InsufficientPrivilege as exc:
            entry.status, entry.reason = "skipped", _refusal(exc)
            continue
        if row is None:
            entry.status = "skipped"
            entry.reason = "no longer idle past the limit (it became active, or disconnected)"
        else:
            entry.status = "terminated"
            if not row[0]:
                entry.reason = f"signalled; still exiting after {TERMINATE_WAIT_MS} ms"
    return report
