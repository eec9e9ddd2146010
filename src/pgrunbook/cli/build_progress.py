"""A progress bar for ``CREATE INDEX CONCURRENTLY``, read from pg_stat_progress_create_index.

The build runs on the step's session; a thread polls the progress view for that backend on a
second connection and moves the bar (stderr) until the build ends.
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Final

import psycopg
from rich.progress import TaskID

from pgrunbook.change.operation import Operation
from pgrunbook.change.step import StepContext
from pgrunbook.change.steps.indexes import build_progress
from pgrunbook.cli.progress import phase_bars
from pgrunbook.connect import connect
from pgrunbook.errors import ConnectError

POLL_SECONDS: Final = 0.5


class BuildBars:
    """``start(op)`` when a concurrent build begins, ``stop()`` when it ends."""

    def __init__(self, ctx: StepContext, *, enabled: bool = True) -> None:
        self.ctx = ctx
        self.enabled = enabled and ctx.info is not None
        self.bars = phase_bars(self.enabled)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> BuildBars:
        if self.enabled:
            self.bars.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        if self.enabled:
            self.bars.stop()

    def start(self, op: Operation) -> None:
        if not self.enabled or self._thread is not None:
            return
        task = self.bars.add_task(op.object, total=1.0, phase="starting")
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._poll, args=(task, self.ctx.conn.info.backend_pid), daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=5)
        self._thread = None
        for task in list(self.bars.task_ids):
            self.bars.remove_task(task)

    def _poll(self, task: TaskID, pid: int) -> None:
        assert self.ctx.info is not None
        try:
            with connect(self.ctx.info, autocommit=True) as conn:
                while not self._stop.wait(POLL_SECONDS):
                    progress = build_progress(conn, pid)
                    if progress is None:
                        continue
                    self.bars.update(
                        task,
                        completed=progress.fraction or 0.0,
                        phase=progress.describe(),
                    )
        except (ConnectError, psycopg.Error):
            return  # the bar is a nicety: the build goes on without it
