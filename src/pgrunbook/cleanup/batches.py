"""The delete loop: short batches, each one statement and so its own transaction.

By default the batches go through the heap in block ranges (``cleanup.blockranges``): each page
is read once, as one plain DELETE would, which on a table whose key is random (Prisma's uuid or
cuid) is several times faster than key order. ``by="key"`` goes in primary-key order, described
here. Each batch picks up to ``batch_size`` matching keys (``FOR UPDATE SKIP LOCKED``, so rows
the app holds are left for a later run) and deletes them only if they still match: a row
changed between the pick and the delete is never deleted. An interruption (Ctrl-C, or
``should_stop``) lands either inside a batch, whose transaction then rolls back, or between
batches; a batch is never half done. Running again carries on where it stopped; a finished run
deletes nothing.

Batches walk the key upwards: each starts after the last key the previous one deleted, so it
never re-reads the index entries of the rows already deleted (still there until VACUUM:
starting every batch from the lowest key made a run quadratic). The delete looks the keys up
through the primary key (``= ANY (ARRAY(...))``; ``IN (SELECT ...)`` was planned as a hash join
over a scan of the whole table, for every batch). When the walk reaches the end, one more pass
from the lowest key picks up the rows skipped on the way (locked by the app, or that began to
match); a pass that deletes nothing ends the run.

The session's timeouts are set once for the whole run (``locking.timeouts``) and restored after
it; a batch that fails on its lock timeout is retried with backoff.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import psycopg
from psycopg import sql

from pgrunbook import __version__
from pgrunbook.cleanup.blockranges import BlockRanges
from pgrunbook.cleanup.policies import ResolvedPolicy
from pgrunbook.locking import LockPolicy, retry_lock_timeouts, timeouts

BatchOrder = Literal["key", "blocks"]

DEFAULT_BATCH_SIZE: Final = 5000
CLEANUP_LOCKS: Final = LockPolicy(lock_timeout_ms=100, statement_timeout_ms=60_000)

# One batch: the rows it deleted and the highest key among them (where the next one starts).
DELETE_SQL: Final = sql.SQL(
    "WITH deleted AS (DELETE FROM {table} WHERE {key} = ANY (ARRAY("
    "SELECT {key} FROM {table} WHERE ({where}){after} ORDER BY {key} LIMIT {limit} "
    "FOR UPDATE SKIP LOCKED)) AND {where} RETURNING {key}) "
    "SELECT count(*), (SELECT {key} FROM deleted ORDER BY {key} DESC LIMIT 1) FROM deleted"
)
AFTER_SQL: Final = sql.SQL(" AND {key} > {last}")

RUNS_SQL: Final = """
CREATE SCHEMA IF NOT EXISTS pgrunbook;
CREATE TABLE IF NOT EXISTS pgrunbook.cleanup_runs (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    policy text NOT NULL,
    table_name text NOT NULL,
    predicate text NOT NULL,
    deleted bigint NOT NULL,
    batches integer NOT NULL,
    batch_size integer NOT NULL,
    interrupted boolean NOT NULL,
    seconds double precision NOT NULL,
    run_by text NOT NULL DEFAULT current_user,
    finished_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    tool_version text NOT NULL
);
"""

RECORD_SQL: Final = """
INSERT INTO pgrunbook.cleanup_runs
    (policy, table_name, predicate, deleted, batches, batch_size, interrupted, seconds,
     tool_version)
VALUES (%(policy)s, %(table)s, %(predicate)s, %(deleted)s, %(batches)s, %(batch_size)s,
        %(interrupted)s, %(seconds)s, %(version)s)
"""

VACUUM_SQL: Final = sql.SQL("VACUUM (ANALYZE) {table}")


@dataclass(frozen=True)
class BatchProgress:
    policy: str
    batch: int
    deleted: int  # so far, committed
    seconds: float


@dataclass
class CleanupResult:
    policy: str
    table: str
    batch_size: int
    deleted: int = 0
    batches: int = 0  # committed batches that deleted rows
    seconds: float = 0.0
    interrupted: bool = False
    vacuumed: bool = False
    predicate: str = field(default="", repr=False)

    @property
    def rows_per_second(self) -> float:
        return self.deleted / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "table": self.table,
            "deleted": self.deleted,
            "batches": self.batches,
            "batch_size": self.batch_size,
            "seconds": round(self.seconds, 3),
            "rows_per_second": round(self.rows_per_second, 1),
            "interrupted": self.interrupted,
            "vacuumed": self.vacuumed,
        }


def delete_statement(
    policy: ResolvedPolicy, batch_size: int, after: object | None = None
) -> sql.Composed:
    """One batch's DELETE (the predicate re-checked on the rows it deletes), of keys above
    ``after`` when given; it returns the number of rows deleted and the highest key."""
    key = sql.Identifier(policy.key)
    return DELETE_SQL.format(
        table=policy.ident,
        key=key,
        where=policy.predicate,
        after=sql.SQL("") if after is None else AFTER_SQL.format(key=key, last=sql.Literal(after)),
        limit=sql.Literal(batch_size),
    )


class KeyBatches:
    """Batches in key order: ``step()`` deletes one; the rows deleted, None when done."""

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        policy: ResolvedPolicy,
        batch_size: int,
        locks: LockPolicy,
    ) -> None:
        self.conn, self.policy, self.batch_size, self.locks = conn, policy, batch_size, locks
        self.after: object | None = None  # the last key deleted in this pass; None: lowest

    def _batch(self) -> tuple[int, object | None]:
        # one statement on the autocommit session: its own transaction, one round trip
        statement = delete_statement(self.policy, self.batch_size, self.after)
        row = self.conn.execute(statement).fetchone()
        assert row is not None
        return int(row[0]), row[1]

    def step(self) -> int | None:
        deleted, last = retry_lock_timeouts(
            self._batch,
            self.locks,
            what=f"deleting a batch from {self.policy.table.qualified}",
        )
        if deleted <= 0:
            if self.after is None:
                return None  # a pass from the lowest key found nothing (more)
            self.after = None  # the end of the key: once more from the start
            return 0
        self.after = last
        return deleted


def run_cleanup(
    conn: psycopg.Connection[Any],
    policy: ResolvedPolicy,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    sleep_seconds: float = 0.0,
    locks: LockPolicy = CLEANUP_LOCKS,
    on_batch: Callable[[BatchProgress], None] = lambda progress: None,
    should_stop: Callable[[], bool] = lambda: False,
    max_batches: int | None = None,
    vacuum: bool = False,
    record: bool = True,
    sleep: Callable[[float], None] = time.sleep,
    by: BatchOrder = "blocks",
) -> CleanupResult:
    """Delete ``policy``'s rows in batches on the autocommit connection ``conn``.

    Each batch is one statement, so its own transaction: the session's timeouts are set
    once for the run (``locks``) and restored at its end. ``by="blocks"`` (the default) goes
    through the heap in block ranges; ``by="key"`` in primary-key order (also used for a
    table that is not a plain table, e.g. partitioned).

    Stops when a batch starting from the lowest key (``by="blocks"``: the last block range)
    deletes nothing, after ``max_batches`` batches that deleted rows, when ``should_stop()``
    is true between batches, or on KeyboardInterrupt (the batch in flight rolls back; the
    result says ``interrupted``). The run is recorded in ``pgrunbook.cleanup_runs``.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    if not conn.autocommit:
        raise ValueError("run_cleanup needs an autocommit connection (a batch per transaction)")
    result = CleanupResult(
        policy.name, policy.table.qualified, batch_size, predicate=policy.predicate.as_string()
    )
    started = time.monotonic()
    batches: KeyBatches | BlockRanges = (
        BlockRanges(conn, policy, batch_size, locks)
        if by == "blocks" and policy.table.kind == "r"
        else KeyBatches(conn, policy, batch_size, locks)
    )
    try:
        with timeouts(conn, lock_timeout_ms=locks.lock_timeout_ms,
                      statement_timeout_ms=locks.statement_timeout_ms):  # fmt: skip
            _loop(
                batches, result, started, sleep_seconds, on_batch, should_stop, max_batches, sleep
            )
    except KeyboardInterrupt:
        result.interrupted = True
    result.seconds = time.monotonic() - started
    if record:
        record_run(conn, result)
    if vacuum and not result.interrupted:
        conn.execute(VACUUM_SQL.format(table=policy.ident))
        result.vacuumed = True
    return result


def _loop(
    batches: KeyBatches | BlockRanges,
    result: CleanupResult,
    started: float,
    sleep_seconds: float,
    on_batch: Callable[[BatchProgress], None],
    should_stop: Callable[[], bool],
    max_batches: int | None,
    sleep: Callable[[float], None],
) -> None:
    """The batches of one run, until done, stopped or ``max_batches`` (updates ``result``)."""
    while max_batches is None or result.batches < max_batches:
        if should_stop():
            result.interrupted = True
            return
        deleted = batches.step()
        if deleted is None:
            return
        if deleted == 0:
            continue
        result.deleted += deleted
        result.batches += 1
        elapsed = time.monotonic() - started
        on_batch(BatchProgress(result.policy, result.batches, result.deleted, elapsed))
        if sleep_seconds > 0:
            sleep(sleep_seconds)
    result.interrupted = True  # max_batches reached: not known to be finished


def record_run(conn: psycopg.Connection[Any], result: CleanupResult) -> None:
    """Append the run to ``pgrunbook.cleanup_runs`` (created on first use)."""
    with conn.transaction():
        conn.execute(RUNS_SQL.encode())
        conn.execute(
            RECORD_SQL,
            {
                "policy": result.policy,
                "table": result.table,
                "predicate": result.predicate,
                "deleted": result.deleted,
                "batches": result.batches,
                "batch_size": result.batch_size,
                "interrupted": result.interrupted,
                "seconds": result.seconds,
                "version": __version__,
            },
        )
