"""Cleanup batches by block range: the heap in physical order, a few pages at a time.

Each batch is ``DELETE ... WHERE ctid >= '(b,0)' AND ctid < '(b+n,0)' AND <predicate>`` (a
TID range scan), with ``n`` the number of pages that hold about ``batch_size`` rows
(``reltuples / relpages``), so a batch never holds more than about ``batch_size`` row locks.
Every page is read once per run, as one plain DELETE would: on a table whose primary key is
random (uuid) this is several times faster than batches in key order, which read a page per
row.

What differs from batches by key: rows go in physical order and a batch deletes up to about
``batch_size`` rows (not exactly). A batch takes no row locks before deleting (taking them,
``FOR UPDATE SKIP LOCKED`` on every row, costs a second write per row and halves the speed):
a row the app holds is waited for, for at most the ``lock_timeout`` (100 ms, far below
``deadlock_timeout``, so when the app and a batch wait for each other the batch gives way).
Then the range is deleted again the careful way, locking its rows with ``SKIP LOCKED`` and
deleting those by ``ctid`` (a TID scan), and the range is visited once more at the end of the
walk; rows the app still holds then are left for the next run.
The predicate is the DELETE's own, so a row changed meanwhile is deleted only if it still
matches. A row the app moves behind the walk (an update that lands on an earlier page), or
that begins to match after its page was passed, is left for the next run. Each batch is one
statement on the autocommit session, so its own transaction. Needs PostgreSQL 14+ (TID
range scans); not for partitioned tables (those go by key).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import psycopg
from psycopg import errors, sql

from pgrunbook.cleanup.policies import ResolvedPolicy
from pgrunbook.locking import LockPolicy, retry_lock_timeouts
from pgrunbook.rows import fetch_one

SIZE_SQL: Final = """
SELECT (pg_relation_size(c.oid) / current_setting('block_size')::int8)::int8 AS blocks,
       c.reltuples::float8 AS tuples, c.relpages::int8 AS pages
  FROM pg_class c WHERE c.oid = %(table)s::regclass
"""

RANGE_DELETE_SQL: Final = sql.SQL(
    "DELETE FROM {table} WHERE ctid >= {start}::tid AND ctid < {end}::tid AND ({where})"
)
# The same range when a row of it is locked: lock what is free, delete those, skip the rest.
SKIP_LOCKED_DELETE_SQL: Final = sql.SQL(
    "DELETE FROM {table} WHERE ctid = ANY (ARRAY("
    "SELECT ctid FROM {table} WHERE ctid >= {start}::tid AND ctid < {end}::tid AND ({where}) "
    "FOR UPDATE SKIP LOCKED)) AND ({where})"
)

# Rows per page assumed when the table was never analyzed (a few hundred-byte rows).
UNKNOWN_DENSITY: Final = 60.0


@dataclass(frozen=True)
class Size:
    blocks: int  # now
    tuples: float  # reltuples: -1 when never analyzed
    pages: int  # relpages, when reltuples was counted


def range_statement(
    policy: ResolvedPolicy, start: int, end: int, *, skip_locked: bool = False
) -> sql.Composed:
    """The DELETE of the policy's rows in blocks ``[start, end)`` (``skip_locked``: of
    those no one else holds)."""
    template = SKIP_LOCKED_DELETE_SQL if skip_locked else RANGE_DELETE_SQL
    return template.format(
        table=policy.ident,
        start=sql.Literal(f"({start},0)"),
        end=sql.Literal(f"({end},0)"),
        where=policy.predicate,
    )


class BlockRanges:
    """Batches by block range: ``step()`` deletes one; the rows deleted, None when done."""

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        policy: ResolvedPolicy,
        batch_size: int,
        locks: LockPolicy,
    ) -> None:
        if policy.table.kind != "r":
            raise ValueError(f"{policy.table.qualified}: block ranges need a plain table")
        self.conn, self.policy, self.locks = conn, policy, locks
        size = self._size()
        density = size.tuples / size.pages if size.pages > 0 and size.tuples > 0 else 0.0
        self.blocks_per_batch = max(1, int(batch_size / (density or UNKNOWN_DENSITY)))
        self.start = 0
        self.end = size.blocks
        self.revisit: list[int] = []  # ranges where rows the app held were skipped
        self.revisiting = False

    def _size(self) -> Size:
        table = self.policy.ident.as_string(self.conn)
        return fetch_one(self.conn, Size, SIZE_SQL, {"table": table})

    def _batch(self, start: int, *, skip_locked: bool) -> int:
        end = start + self.blocks_per_batch
        statement = range_statement(self.policy, start, end, skip_locked=skip_locked)
        return self.conn.execute(statement).rowcount  # autocommit: one transaction

    def _next(self) -> int | None:
        """The first block of the next range: the walk, then the ranges to visit again."""
        if self.start >= self.end and not self.revisiting:
            self.end = self._size().blocks  # the table may have grown meanwhile
            self.revisiting = self.start >= self.end
        if not self.revisiting:
            start = self.start
            self.start += self.blocks_per_batch
            return start
        return self.revisit.pop(0) if self.revisit else None

    def step(self) -> int | None:
        """Delete the next range (under the session's timeouts, set by the caller); the rows
        deleted, None when done."""
        start = self._next()
        if start is None:
            return None
        try:
            return self._batch(start, skip_locked=False)
        except errors.LockNotAvailable:
            if not self.revisiting:
                self.revisit.append(start)
        return retry_lock_timeouts(
            lambda: self._batch(start, skip_locked=True),
            self.locks,
            what=f"deleting a block range of {self.policy.table.qualified}",
        )
