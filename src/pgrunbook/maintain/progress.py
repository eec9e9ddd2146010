"""How far a ``VACUUM`` has got (pg_stat_progress_vacuum), read from a second session.

The caller passes the vacuuming backend's pid. ``VACUUM FULL`` reports in
pg_stat_progress_cluster instead and is not covered here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import psycopg

from pgrunbook.rows import fetch

PROGRESS_SQL: Final = """
SELECT p.pid, p.phase, nullif(p.relid, 0)::regclass::text AS table_name,
       p.heap_blks_total::int8, p.heap_blks_scanned::int8, p.heap_blks_vacuumed::int8,
       p.index_vacuum_count::int8
  FROM pg_stat_progress_vacuum p
 WHERE p.pid = %(pid)s
"""


@dataclass(frozen=True)
class VacuumProgress:
    pid: int
    phase: str
    table_name: str | None
    heap_blks_total: int
    heap_blks_scanned: int
    heap_blks_vacuumed: int
    index_vacuum_count: int

    @property
    def fraction(self) -> float | None:
        """Share of the heap scanned (0..1); None for an empty table."""
        if self.heap_blks_total <= 0:
            return None
        return min(self.heap_blks_scanned / self.heap_blks_total, 1.0)

    def describe(self) -> str:
        """One line: ``scanning heap 42% (1,234 of 2,940 blocks)``."""
        text = self.phase
        if self.fraction is not None:
            text += (
                f" {self.fraction:.0%} ({self.heap_blks_scanned:,} of "
                f"{self.heap_blks_total:,} blocks)"
            )
        return text


def vacuum_progress(conn: psycopg.Connection[Any], pid: int) -> VacuumProgress | None:
    """The progress of the VACUUM backend ``pid`` is running; None when it runs none."""
    found = fetch(conn, VacuumProgress, PROGRESS_SQL, {"pid": pid})
    return found[0] if found else None
