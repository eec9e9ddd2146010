"""How far a ``VACUUM`` has got (pg_stat_progress_vacuum), read from a second session.

The caller passes the vacuuming backend's pid. ``VacuumWatch`` polls it from a thread on its
own connection while the VACUUM runs on the first, for a progress bar. ``VACUUM FULL``
reports in pg_stat_progress_cluster instead and is not covered here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final

import psycopg

from pgrunbook.connect import connect
from pgrunbook.dsn import ConnInfo
from pgrunbook.errors import ConnectError
from pgrunbook.rows import fetch

POLL_SECONDS: Final = 0.5

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


class VacuumWatch:
    """While the block runs, poll the progress of backend ``pid`` every ``poll_seconds`` on a
    second session (``info``) and pass each reading to ``on_progress`` (from the thread).

    The readings are a nicety: if the second session cannot connect or fails, polling stops
    and the VACUUM goes on. ``error`` then says why.
    """

    def __init__(
        self,
        info: ConnInfo,
        pid: int,
        on_progress: Callable[[VacuumProgress], None],
        *,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self.info = info
        self.pid = pid
        self.on_progress = on_progress
        self.poll_seconds = poll_seconds
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="vacuum-progress", daemon=True)

    def __enter__(self) -> VacuumWatch:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _poll(self) -> None:
        try:
            with connect(self.info, autocommit=True) as conn:
                while not self._stop.is_set():
                    progress = vacuum_progress(conn, self.pid)
                    if progress is not None:
                        self.on_progress(progress)
                    self._stop.wait(self.poll_seconds)
        except (ConnectError, psycopg.Error) as exc:
            self.error = " ".join(str(exc).split()) or type(exc).__name__
