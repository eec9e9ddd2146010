"""A progress bar for ``VACUUM``, read from pg_stat_progress_vacuum (``pgrunbook maintain``).

The VACUUM runs on the maintenance session; ``VacuumWatch`` polls the progress view for that
backend on a second connection and moves the bar (stderr, transient) until the run ends.
"""

from __future__ import annotations

import threading
from types import TracebackType

from rich.progress import TaskID

from pgrunbook.cli.common import err_console
from pgrunbook.cli.progress import phase_bars
from pgrunbook.dsn import ConnInfo
from pgrunbook.maintain.progress import VacuumProgress, VacuumWatch


class VacuumBar:
    """One bar per table being vacuumed: phase and share of the heap scanned.

    ``started(statement)`` prints the statement about to run (above the bar) and clears the
    previous table's bar. Disabled, it only prints.
    """

    def __init__(self, info: ConnInfo, pid: int, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self.bars = phase_bars(enabled)
        self.watch = VacuumWatch(info, pid, self._update) if enabled else None
        self._lock = threading.Lock()
        self._tasks: dict[str, TaskID] = {}

    def __enter__(self) -> VacuumBar:
        if self.watch is not None:
            self.bars.start()
            self.watch.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.watch is not None:
            self.watch.__exit__(exc_type, exc, tb)
            self.bars.stop()

    def started(self, statement: str) -> None:
        err_console.print(statement, markup=False)
        with self._lock:
            for task in self._tasks.values():
                self.bars.remove_task(task)
            self._tasks.clear()

    def _update(self, progress: VacuumProgress) -> None:
        name = progress.table_name or f"pid {progress.pid}"
        with self._lock:
            task = self._tasks.get(name)
            if task is None:
                task = self._tasks[name] = self.bars.add_task(name, total=1.0, phase="")
            self.bars.update(task, completed=progress.fraction or 0.0, phase=progress.describe())
