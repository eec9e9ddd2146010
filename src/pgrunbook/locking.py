"""Timeouts and lock retries: the one place that sets ``lock_timeout``/``statement_timeout``.

A statement that waits for a lock makes every later query on that table wait behind it, so
anything that takes a lock runs with a short ``lock_timeout`` and is retried with jittered
backoff until a total budget runs out.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import psycopg
from psycopg import errors
from psycopg.pq import TransactionStatus

from pgrunbook.errors import PgRunbookError

T = TypeVar("T")

_SET: Final = "SELECT set_config('lock_timeout', %s, %s), set_config('statement_timeout', %s, %s)"
_READ_ONLY: Final = "SET TRANSACTION READ ONLY"
_SHOW: Final = "SELECT current_setting('lock_timeout'), current_setting('statement_timeout')"


@dataclass(frozen=True)
class LockPolicy:
    lock_timeout_ms: int = 100
    statement_timeout_ms: int = 60_000
    budget_seconds: float = 600.0
    first_delay: float = 0.05
    max_delay: float = 2.0

    def delay(self, attempt: int) -> float:
        delay: float = min(self.first_delay * 2**attempt, self.max_delay)
        return delay * random.uniform(0.5, 1.5)


class LockBudgetExceeded(PgRunbookError):
    exit_code = 1


@contextmanager
def timeouts(
    conn: psycopg.Connection[Any], *, lock_timeout_ms: int, statement_timeout_ms: int
) -> Iterator[None]:
    """Run the block under these timeouts.

    In a transaction they are ``SET LOCAL`` (gone at its end, and put back when the block
    ends, for a block that is a savepoint of a longer transaction); on an autocommit
    connection outside a transaction (needed for ``CONCURRENTLY``) they are set for the
    session and restored afterwards. Through a transaction-mode pooler only the first way is
    safe: there each transaction may run on another server session.
    """
    local = not conn.autocommit or conn.info.transaction_status != TransactionStatus.IDLE
    lock, stmt = f"{lock_timeout_ms}ms", f"{statement_timeout_ms}ms"
    if local:
        # SET LOCAL lasts to the end of the transaction, also past a savepoint released in
        # it: put the previous values back when the block ends normally (after an error the
        # transaction or savepoint is rolled back, which undoes the SET LOCAL itself).
        before = conn.execute(_SHOW).fetchone()
        assert before is not None
        conn.execute(_SET, (lock, True, stmt, True))
        yield
        conn.execute(_SET, (str(before[0]), True, str(before[1]), True))
        return
    row = conn.execute(_SHOW).fetchone()
    assert row is not None
    conn.execute(_SET, (lock, False, stmt, False))
    try:
        yield
    finally:
        if not conn.closed:
            conn.execute(_SET, (str(row[0]), False, str(row[1]), False))


@contextmanager
def read_only_transaction(
    conn: psycopg.Connection[Any], *, lock_timeout_ms: int, statement_timeout_ms: int
) -> Iterator[None]:
    """A read-only transaction under ``SET LOCAL`` timeouts: nothing is left on the session,
    which through a transaction-mode pooler (PgBouncer) is shared with the app's next
    transaction. Nested ``conn.transaction()`` blocks inside it are savepoints."""
    with conn.transaction():
        conn.execute(_READ_ONLY)
        with timeouts(
            conn, lock_timeout_ms=lock_timeout_ms, statement_timeout_ms=statement_timeout_ms
        ):
            yield


def with_lock_retries(
    conn: psycopg.Connection[Any],
    action: Callable[[], T],
    policy: LockPolicy,
    *,
    what: str,
    on_retry: Callable[[int, float], None] = lambda attempt, delay: None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``action`` under the policy's timeouts, retrying on lock timeouts.

    Raises LockBudgetExceeded (one line, what was being done) when the budget runs out.
    """

    def attempt() -> T:
        with timeouts(
            conn,
            lock_timeout_ms=policy.lock_timeout_ms,
            statement_timeout_ms=policy.statement_timeout_ms,
        ):
            return action()

    return retry_lock_timeouts(attempt, policy, what=what, on_retry=on_retry, sleep=sleep)


def retry_lock_timeouts(
    action: Callable[[], T],
    policy: LockPolicy,
    *,
    what: str,
    on_retry: Callable[[int, float], None] = lambda attempt, delay: None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``action`` (already under the policy's timeouts, e.g. inside one ``timeouts``
    block around a loop of one-statement batches) and retry it with jittered backoff while
    it fails on a lock timeout; LockBudgetExceeded when the budget runs out."""
    started = time.monotonic()
    attempt = 0
    while True:
        try:
            return action()
        except errors.LockNotAvailable:
            delay = policy.delay(attempt)
            attempt += 1
            if time.monotonic() - started + delay > policy.budget_seconds:
                raise LockBudgetExceeded(
                    f"gave up on {what}: the lock was not free within "
                    f"{policy.budget_seconds:g} s ({attempt} tries of "
                    f"{policy.lock_timeout_ms} ms)",
                    "find the blocking session with 'pgrunbook monitor' and try again",
                ) from None
            on_retry(attempt, delay)
            sleep(delay)
