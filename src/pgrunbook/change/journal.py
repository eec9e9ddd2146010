"""The journal: every operation pgrunbook applied or rolled back, in the database itself.

``pgrunbook.journal`` gets one row when an operation starts and is updated when it ends,
so an interrupted run leaves a ``started`` row behind (the next run knows where it stopped)
and rollback replays the recorded inverse, not a guess. ``RunLock`` is a session advisory
lock: two pgrunbook runs never change the same database at once.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

import psycopg
from psycopg.types.json import Jsonb

from pgrunbook import __version__
from pgrunbook.change.operation import Operation
from pgrunbook.errors import PgRunbookError
from pgrunbook.locking import timeouts
from pgrunbook.rows import fetch

SCHEMA: Final = "pgrunbook"
# One advisory lock key for "pgrunbook is changing this database" (advisory locks are
# per database already). 0x70677262 spells "pgrb".
RUN_LOCK_KEY: Final = 0x70677262

CREATE_SQL: Final = """
CREATE SCHEMA IF NOT EXISTS pgrunbook;
CREATE TABLE IF NOT EXISTS pgrunbook.journal (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id uuid NOT NULL,
    step text NOT NULL,
    object text NOT NULL,
    action text NOT NULL CHECK (action IN ('apply', 'rollback')),
    forward_sql text NOT NULL,
    inverse_sql text,
    definition_hash text NOT NULL,
    operation jsonb NOT NULL,
    fingerprint text,
    outcome text NOT NULL CHECK (outcome IN ('started', 'done', 'failed')),
    error text,
    applied_by text NOT NULL DEFAULT current_user,
    started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at timestamptz,
    tool_version text NOT NULL
);
COMMENT ON SCHEMA pgrunbook IS
    'pgrunbook: the journal of the runbook changes it applied (drop it to forget them)';
"""

START_SQL: Final = """
INSERT INTO pgrunbook.journal
       (run_id, step, object, action, forward_sql, inverse_sql, definition_hash, operation,
        outcome, tool_version)
VALUES (%(run_id)s, %(step)s, %(object)s, %(action)s, %(forward_sql)s, %(inverse_sql)s,
        %(hash)s, %(operation)s, 'started', %(version)s)
RETURNING id
"""

FINISH_SQL: Final = """
UPDATE pgrunbook.journal SET outcome = %(outcome)s, error = %(error)s,
       fingerprint = %(fingerprint)s, finished_at = clock_timestamp()
 WHERE id = %(id)s
"""

# The latest entry per (step, object): what is in force now.
LATEST_SQL: Final = """
SELECT DISTINCT ON (step, object)
       id, run_id, step, object, action, forward_sql, inverse_sql, definition_hash, operation,
       fingerprint, outcome, error, applied_by, started_at, finished_at, tool_version
  FROM pgrunbook.journal
 WHERE to_regclass('pgrunbook.journal') IS NOT NULL
 ORDER BY step, object, id DESC
"""

EXISTS_SQL: Final = "SELECT to_regclass('pgrunbook.journal') IS NOT NULL"

TRY_LOCK_SQL: Final = "SELECT pg_try_advisory_lock(%(key)s)"
UNLOCK_SQL: Final = "SELECT pg_advisory_unlock(%(key)s)"
HOLDER_SQL: Final = """
SELECT l.pid, a.usename::text, a.application_name, a.client_addr::text
  FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
 WHERE l.locktype = 'advisory' AND l.granted AND l.database = (
         SELECT oid FROM pg_database WHERE datname = current_database())
   AND l.classid = 0 AND l.objid = %(key)s AND l.objsubid = 1
"""

Action = Literal["apply", "rollback"]
Outcome = Literal["started", "done", "failed"]


@dataclass
class JournalEntry:
    id: int
    run_id: uuid.UUID
    step: str
    object: str
    action: str
    forward_sql: str
    inverse_sql: str | None
    definition_hash: str
    operation: dict[str, Any]
    fingerprint: str | None
    outcome: str
    error: str | None
    applied_by: str
    started_at: datetime
    finished_at: datetime | None
    tool_version: str

    @property
    def in_force(self) -> bool:
        """The object is (or may be, if it was interrupted) there because of pgrunbook."""
        return self.action == "apply" and self.outcome in ("done", "started")

    @property
    def interrupted(self) -> bool:
        """The run stopped while this operation was under way (killed, connection lost)."""
        return self.outcome == "started"

    def as_operation(self) -> Operation:
        """The operation as applied (rebuilt from its record), for rollback."""
        return Operation.from_record(self.operation)


class RunBusyError(PgRunbookError):
    """Another pgrunbook run holds the database's run lock."""


@contextmanager
def RunLock(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """Hold the database's pgrunbook advisory lock for the block, or refuse in one line."""
    row = conn.execute(TRY_LOCK_SQL, {"key": RUN_LOCK_KEY}).fetchone()
    if not (row and row[0]):
        holder = conn.execute(HOLDER_SQL, {"key": RUN_LOCK_KEY}).fetchone()
        who = (
            f"pid {holder[0]}, user {holder[1]}, application {holder[2] or '-'}"
            if holder
            else "a session this role cannot see"
        )
        raise RunBusyError(
            f"another pgrunbook run is changing this database ({who})",
            "wait for it to finish; pgrunbook never runs two changes at once",
        )
    try:
        yield
    finally:
        if not conn.closed:
            conn.execute(UNLOCK_SQL, {"key": RUN_LOCK_KEY})


class Journal:
    """Reads and writes ``pgrunbook.journal`` on an autocommit connection."""

    def __init__(self, conn: psycopg.Connection[Any], run_id: uuid.UUID | None = None) -> None:
        self.conn = conn
        self.run_id = run_id or uuid.uuid4()

    def ensure(self) -> None:
        """Create the schema and table (brief locks on new objects only)."""
        with (
            self.conn.transaction(),
            timeouts(self.conn, lock_timeout_ms=2000, statement_timeout_ms=30_000),
        ):
            self.conn.execute(CREATE_SQL.encode())

    def exists(self) -> bool:
        row = self.conn.execute(EXISTS_SQL).fetchone()
        return bool(row and row[0])

    def start(self, op: Operation, action: Action) -> int:
        """Journal ``op`` as started; for a rollback, ``op`` is the applied operation."""
        forward, inverse = (op.sql, op.reverse_sql) if action == "apply" else (
            op.reverse_sql or "", op.sql)  # fmt: skip
        row = self.conn.execute(
            START_SQL,
            {
                "run_id": self.run_id,
                "step": op.step,
                "object": op.object,
                "action": action,
                "forward_sql": forward,
                "inverse_sql": inverse,
                "hash": op.definition_hash,
                "operation": Jsonb(op.to_record()),
                "version": __version__,
            },
        ).fetchone()
        assert row is not None
        return int(row[0])

    def finish(
        self,
        entry_id: int,
        outcome: Outcome,
        error: str | None = None,
        fingerprint: str | None = None,
    ) -> None:
        self.conn.execute(
            FINISH_SQL,
            {"id": entry_id, "outcome": outcome, "error": error, "fingerprint": fingerprint},
        )

    def latest(self) -> list[JournalEntry]:
        """The newest entry per (step, object); empty before pgrunbook changed anything."""
        if not self.exists():
            return []
        return fetch(self.conn, JournalEntry, LATEST_SQL)

    def in_force(self, steps: Collection[str] | None = None) -> list[JournalEntry]:
        """What pgrunbook applied and has not rolled back, oldest first."""
        entries = [e for e in self.latest() if e.in_force]
        if steps is not None:
            entries = [e for e in entries if e.step in steps]
        return sorted(entries, key=lambda e: e.id)
