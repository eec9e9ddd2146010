"""How far a ``CREATE INDEX CONCURRENTLY`` has got (pg_stat_progress_create_index).

Read from a second session while the build runs on the first: the caller passes the
building backend's pid. A role sees the progress of its own sessions (and all of them with
pg_read_all_stats).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import psycopg

from pgrunbook.rows import fetch

PROGRESS_SQL: Final = """
SELECT p.pid, p.command, p.phase,
       nullif(p.index_relid, 0)::regclass::text AS index_name,
       nullif(p.relid, 0)::regclass::text AS table_name,
       p.blocks_total, p.blocks_done, p.tuples_total, p.tuples_done,
       p.lockers_total, p.lockers_done, nullif(p.current_locker_pid, 0) AS current_locker_pid
  FROM pg_stat_progress_create_index p
 WHERE p.pid = %(pid)s
"""

# The phases whose work is counted in heap blocks; the sort and load phases count tuples,
# the waiting phases count the transactions waited for.
_BLOCK_PHASES: Final = ("scanning table",)
_TUPLE_PHASES: Final = ("sorting", "loading tuples", "scanning index")


@dataclass(frozen=True)
class BuildProgress:
    pid: int
    command: str
    phase: str
    index_name: str | None  # unknown before the index exists (and without privileges)
    table_name: str | None
    blocks_total: int
    blocks_done: int
    tuples_total: int
    tuples_done: int
    lockers_total: int
    lockers_done: int
    current_locker_pid: int | None  # the transaction a waiting phase waits for now

    @property
    def waiting(self) -> bool:
        return self.phase.startswith("waiting")

    def _counts(self) -> tuple[int, int, str] | None:
        """(done, total, unit) of the current phase, when it counts something."""
        if any(p in self.phase for p in _BLOCK_PHASES) and self.blocks_total > 0:
            return self.blocks_done, self.blocks_total, "blocks"
        if any(p in self.phase for p in _TUPLE_PHASES) and self.tuples_total > 0:
            return self.tuples_done, self.tuples_total, "tuples"
        if self.waiting and self.lockers_total > 0:
            return self.lockers_done, self.lockers_total, "transactions"
        return None

    @property
    def fraction(self) -> float | None:
        """How much of the current phase is done (0..1), when the phase counts its work."""
        counts = self._counts()
        if counts is None:
            return None
        done, total, _ = counts
        return min(done / total, 1.0)

    def describe(self) -> str:
        """One line: ``building index: scanning table 42% (1,234 of 2,940 blocks)``."""
        text = self.phase
        counts = self._counts()
        if counts is not None:
            done, total, unit = counts
            text += f" {done / total:.0%} ({done:,} of {total:,} {unit})"
        if self.waiting and self.current_locker_pid is not None:
            text += f", waiting for pid {self.current_locker_pid}"
        return text


def build_progress(conn: psycopg.Connection[Any], pid: int) -> BuildProgress | None:
    """The progress of the index build backend ``pid`` is running; None when it runs none."""
    found = fetch(conn, BuildProgress, PROGRESS_SQL, {"pid": pid})
    return found[0] if found else None
