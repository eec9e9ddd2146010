"""Progress bars on stderr for row-by-row work."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from pgrunbook.cli.common import err_console
from pgrunbook.seed.load import Progress as ProgressCallback


def phase_bars(enabled: bool) -> Progress:
    """Transient bars on stderr for a server-side operation watched from a second session
    (an index build, a VACUUM): what, how far, its phase, time elapsed."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[phase]}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=not enabled,
    )


@contextmanager
def table_progress(enabled: bool = True) -> Iterator[ProgressCallback]:
    """A callback ``(table, done, expected)`` drawing one bar per table on stderr."""
    bars = Progress(
        TextColumn("{task.description:<18}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        disable=not enabled,
        transient=False,
    )
    tasks: dict[str, TaskID] = {}

    def update(table: str, done: int, expected: int) -> None:
        if table not in tasks:
            tasks[table] = bars.add_task(table, total=expected)
        bars.update(tasks[table], completed=done, total=max(expected, done))

    with bars:
        yield update
