"""Running operations online: never queue behind a lock, never block the app for longer than
the lock timeout, retry with backoff until a budget runs out, journal every operation.

Before each try the runner looks in ``pg_locks`` for sessions *holding* a lock that
conflicts with the one the operation needs; while there are any it waits (and says who)
instead of asking, because a request waiting in the lock queue makes every later query on
the table wait behind it. Then it asks with a short ``lock_timeout``. A lock that cannot
block the app (``CREATE INDEX CONCURRENTLY``'s SHARE UPDATE EXCLUSIVE lets reads and writes
through) is asked for with the statement's own, longer timeout.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import psycopg
from psycopg import errors

from pgrunbook.change.journal import Action, Journal
from pgrunbook.change.operation import Operation
from pgrunbook.errors import PgRunbookError
from pgrunbook.locking import LockBudgetExceeded, LockPolicy, with_lock_retries
from pgrunbook.rows import fetch

HOLDERS_SQL: Final = """
SELECT l.pid, l.mode, a.usename::text AS username, a.application_name, a.state,
       extract(epoch FROM clock_timestamp() - coalesce(a.xact_start, a.query_start))::float8
           AS seconds,
       left(a.query, 200) AS query
  FROM pg_locks l
  LEFT JOIN pg_stat_activity a ON a.pid = l.pid
 WHERE l.locktype = 'relation' AND l.granted AND l.pid <> pg_backend_pid()
   AND l.mode = ANY(%(modes)s)
   AND l.relation = (SELECT c.oid FROM pg_class c
                       JOIN pg_namespace n ON n.oid = c.relnamespace
                      WHERE n.nspname = %(schema)s AND c.relname = %(name)s)
 ORDER BY seconds DESC NULLS LAST
"""

Event = Literal["waiting", "retrying", "running", "done"]


@dataclass(frozen=True)
class ApplyPolicy:
    lock_timeout_ms: int = 100  # how long the app may be held up behind one of our locks
    statement_timeout_ms: int = 60_000
    concurrent_timeout_ms: int = 3_600_000  # CONCURRENTLY builds: long, and app-safe
    budget_seconds: float = 600.0  # waiting for holders plus retries, per operation
    poll_seconds: float = 0.25
    first_backoff: float = 0.05
    max_backoff: float = 2.0


@dataclass
class Holder:
    """A session holding a lock that conflicts with the one we need."""

    pid: int
    mode: str
    username: str | None
    application_name: str | None
    state: str | None
    seconds: float | None
    query: str | None

    def describe(self) -> str:
        age = f"{self.seconds:.1f} s" if self.seconds is not None else "unknown age"
        return (
            f"pid {self.pid} ({self.username or '?'}, {self.application_name or '-'}, "
            f"{self.state or '?'}, {age}) holds {self.mode}"
        )


@dataclass
class OperationResult:
    operation: Operation
    action: Action
    seconds: float = 0.0
    tries: int = 0
    waited_seconds: float = 0.0
    blockers: list[str] = field(default_factory=list)
    skipped: str | None = None  # why it did not run (the object appeared meanwhile)


class OperationFailed(PgRunbookError):
    exit_code = 1


Report = Callable[[Event, Operation, str], None]


def holders(conn: psycopg.Connection[Any], op: Operation) -> list[Holder]:
    """Sessions holding a lock on ``op``'s table that conflicts with the lock it takes."""
    if op.lock_mode is None or op.table is None:
        return []
    modes = [m.value for m in op.lock_mode.conflicts_with()]
    schema, name = op.table
    return fetch(conn, Holder, HOLDERS_SQL, {"modes": modes, "schema": schema, "name": name})


def _timeouts_for(op: Operation, policy: ApplyPolicy) -> tuple[int, int]:
    statement = policy.concurrent_timeout_ms if op.concurrent else policy.statement_timeout_ms
    lock = policy.lock_timeout_ms if op.blocks_app else statement
    return lock, statement


def run_one(
    conn: psycopg.Connection[Any],
    op: Operation,
    policy: ApplyPolicy,
    report: Report,
    result: OperationResult,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Run ``op``'s statement the safe way.

    ``locking.with_lock_retries`` owns the timeouts, the backoff and the budget; each of its
    tries first waits here while a conflicting lock is held.
    """
    started = time.monotonic()
    deadline = started + policy.budget_seconds
    lock_ms, statement_ms = _timeouts_for(op, policy)
    sql = op.executed_sql

    def wait_for_holders() -> None:
        while blocking := holders(conn, op):
            t_iter = time.monotonic()
            result.blockers = [h.describe() for h in blocking]
            if t_iter + policy.poll_seconds > deadline:
                raise LockBudgetExceeded(
                    f"gave up on {op.object} after {policy.budget_seconds:g} s: "
                    f"{'; '.join(result.blockers)}",
                    "end or wait out that session (pgrunbook monitor shows it), then re-run",
                )
            report("waiting", op, "; ".join(result.blockers))
            sleep(policy.poll_seconds)
            result.waited_seconds += time.monotonic() - t_iter

    def attempt() -> None:
        wait_for_holders()
        result.tries += 1
        try:
            if op.transactional:
                with conn.transaction():
                    conn.execute(sql.encode())
            else:
                conn.execute(sql.encode())
        except errors.LockNotAvailable:
            if op.cleanup_sql and not op.transactional:
                conn.execute(op.cleanup_sql.encode())
            raise

    def on_retry(tries: int, delay: float) -> None:
        report("retrying", op, f"lock not free within {lock_ms} ms, try {tries}")
        result.waited_seconds += delay

    with_lock_retries(
        conn,
        attempt,
        LockPolicy(
            lock_timeout_ms=lock_ms,
            statement_timeout_ms=statement_ms,
            budget_seconds=policy.budget_seconds,
            first_delay=policy.first_backoff,
            max_delay=policy.max_backoff,
        ),
        what=op.object,
        on_retry=on_retry,
        sleep=sleep,
    )
    result.seconds = time.monotonic() - started


def apply_operations(
    conn: psycopg.Connection[Any],
    operations: Sequence[Operation],
    journal: Journal,
    *,
    action: Action = "apply",
    policy: ApplyPolicy | None = None,
    report: Report = lambda event, op, text: None,
    sleep: Callable[[float], None] = time.sleep,
) -> list[OperationResult]:
    """Run each operation (``action="rollback"``: its inverse) and journal it.

    ``operations`` are always the operations as applied; for a rollback each one's
    ``reverse()`` runs. ``conn`` must be an autocommit session on the direct endpoint.
    Stops at the first failure (journaled as ``failed``) with one line saying what and why.
    """
    if not conn.autocommit:
        raise ValueError("apply_operations needs an autocommit connection")
    policy = policy or ApplyPolicy()
    results = []
    for op in operations:
        if action == "rollback" and op.reverse_sql is None:
            # nothing to undo (a VALIDATE, the drop of an invalid index), but journal it so
            # the entry is no longer in force
            journal.finish(journal.start(op, action), "done")
            continue
        run = op if action == "apply" else op.reverse()
        result = OperationResult(op, action)
        if run.creates and run.ref is not None and run.ref.exists(conn):
            # created by someone else between plan and apply: not ours to own or undo
            result.skipped = f"{run.ref.kind.value} {run.ref.name} already exists"
            report("done", op, f"skipped: {result.skipped}")
            results.append(result)
            continue
        entry = journal.start(op, action)
        report("running", run, run.sql)
        try:
            run_one(conn, run, policy, report, result, sleep=sleep)
        except LockBudgetExceeded as exc:
            journal.finish(entry, "failed", exc.one_line())
            raise
        except GONE as exc:
            if action != "rollback":
                raise _failed(journal, entry, conn, run, action, exc) from None
            # undoing something whose target was dropped since (e.g. a REVOKE on a table
            # another step's rollback removed): there is nothing left to undo
            result.skipped = f"already gone: {_first_line(exc)}"
            journal.finish(entry, "done", result.skipped)
            report("done", run, result.skipped)
            results.append(result)
            continue
        except psycopg.Error as exc:
            raise _failed(journal, entry, conn, run, action, exc) from None
        fingerprint = op.ref.fingerprint(conn) if action == "apply" and op.ref else None
        journal.finish(entry, "done", fingerprint=fingerprint)
        report("done", run, f"{result.seconds:.2f} s")
        results.append(result)
    return results


# what an inverse may find already gone
GONE = (errors.UndefinedTable, errors.UndefinedObject, errors.UndefinedFunction)


def _first_line(exc: psycopg.Error) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _failed(
    journal: Journal,
    entry: int,
    conn: psycopg.Connection[Any],
    run: Operation,
    action: Action,
    exc: psycopg.Error,
) -> OperationFailed:
    """Journal the failure, clean up what a failed concurrent build left, say it in a line."""
    first = _first_line(exc)
    journal.finish(entry, "failed", first)
    if run.cleanup_sql and not run.transactional:
        conn.execute(run.cleanup_sql.encode())
    return OperationFailed(
        f"{action} of {run.object} failed: {first}",
        "nothing else was changed after it; fix the cause and re-run",
    )
