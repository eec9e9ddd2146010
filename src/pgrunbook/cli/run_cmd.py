"""``pgrunbook run daily|weekly|monthly|quarterly``: the runbook's maintenance schedule."""

from __future__ import annotations

import json
from collections.abc import Collection
from pathlib import Path

import click
from rich import box
from rich.console import Group, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from pgrunbook.cadence import Cadence, RunReport, TaskResult, render_markdown, run_cadence
from pgrunbook.cleanup.batches import DEFAULT_BATCH_SIZE
from pgrunbook.cli.common import (
    dry_run_option,
    dsn_option,
    emit_json,
    err_console,
    json_option,
    out_console,
    plan_limit_option,
    profile_option,
    schema_option,
    target_from,
)
from pgrunbook.profile import load_profile

STATUS_STYLE = {
    "ran": ("done", "green"),
    "dry_run": ("dry run", "cyan"),
    "failed": ("FAILED", "red"),
    "interrupted": ("INTERRUPTED", "red"),
    "not_run": ("not run", "yellow"),
}


def render_grid(
    columns: tuple[str, ...], rows: tuple[tuple[str, ...], ...], width: int
) -> RenderableType:
    """A table when it fits in ``width`` columns; otherwise one block per row (its first
    cell, then ``column: value`` lines), so that nothing is cut or squeezed."""
    natural = sum(max(len(c), *(len(r[n]) for r in rows)) + 3 for n, c in enumerate(columns))
    if natural <= width:
        table = Table(box=box.SIMPLE_HEAD, show_edge=False)
        for column in columns:
            table.add_column(column, no_wrap=True)
        for row in rows:
            table.add_row(*row)
        return table
    label = max(len(c) for c in columns[1:]) if len(columns) > 1 else 0
    lines: list[RenderableType] = []
    for row in rows:
        lines.append(Text(f"  {row[0]}", style="bold"))
        lines += [Text(f"    {c:<{label}}  {v}") for c, v in zip(columns[1:], row[1:], strict=True)]
    return Group(*lines)


def render_task(task: TaskResult, *, grid: bool = True) -> RenderableType:
    label, style = STATUS_STYLE[task.status]
    parts: list[RenderableType] = [
        Text.assemble((f"{task.title}", "bold"), ": ", (label, style), f" ({task.seconds:.1f} s)"),
        Text(f"  runbook: {task.runbook}", style="dim"),
    ]
    if task.error:
        parts.append(Text(f"  {task.error}", style="red"))
    if task.summary:
        parts.append(Text(f"  {task.summary}"))
    if grid and task.grid is not None and task.grid.rows:
        parts.append(render_grid(task.grid.columns, task.grid.rows, out_console.width))
    parts += [Text(f"  {note}") for note in task.notes]
    return Group(*parts)


def render(report: RunReport, *, grids: Collection[str] | None = None) -> RenderableType:
    """The report for the terminal; ``grids``: the tasks whose tables to show (all: None)."""
    mode = " (dry run: nothing changed)" if report.dry_run else ""
    header = Text.assemble(
        (f"pgrunbook run {report.cadence}", "bold"),
        f"{mode}: database {report.database}, schema {report.schema}, "
        f"{report.started_at:%Y-%m-%d %H:%M} UTC",
    )
    parts: list[RenderableType] = [header, Text("")]
    for task in report.tasks:
        shown = grids is None or task.id in grids
        parts += [render_task(task, grid=shown), Text("")]
    problems = report.problems
    if problems:
        which = ", ".join(f"{t.title} ({t.status})" for t in problems)
        parts.append(Text(f"problems: {which}", style="red"))
    else:
        snapshot = "; size snapshot recorded" if report.snapshot_recorded else ""
        n = len(report.tasks)
        done = f"all {n} tasks done" if n > 1 else "the task done"
        parts.append(Text(f"{done} in {report.seconds:.1f} s{snapshot}"))
    return Group(*parts)


def write_report(report: RunReport, path: Path) -> None:
    """Markdown, or JSON when ``path`` ends in .json."""
    if path.suffix.lower() == ".json":
        text = json.dumps(report.to_json(), indent=2, default=str) + "\n"
    else:
        text = render_markdown(report)
    path.write_text(text, encoding="utf-8")


@click.command(name="run", short_help="Run the maintenance schedule's tasks for a cadence.")
@click.argument("cadence", type=click.Choice([c.value for c in Cadence]))
@dsn_option
@schema_option("Schema to maintain. Default: the URL's, or public.")
@profile_option
@dry_run_option
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=DEFAULT_BATCH_SIZE,
    show_default=True,
    help="Rows per cleanup batch (each batch its own transaction).",
)
@plan_limit_option
@click.option(
    "--output",
    "output",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    metavar="FILE",
    help="Also write the report to FILE: Markdown, or JSON when FILE ends in .json.",
)
@json_option
def run_cmd(
    cadence: str,
    dsn: str | None,
    schema: str | None,
    profile_path: Path | None,
    dry_run: bool,
    batch_size: int,
    plan_limit_mb: int | None,
    output: Path | None,
    as_json: bool,
) -> None:
    """Run the runbook's section 8 tasks for CADENCE and report them.

    daily: delete expired refresh tokens (the retention policies with cadence "daily").
    weekly: ANALYZE the schema's tables; delete old read notifications ("weekly" policies).
    monthly: VACUUM (ANALYZE) Message, Notification and GiftSend; unused-index and bloat
    reports. quarterly: a review of the slowest queries, index bloat, storage growth against
    the plan limit, and the retention policies' yields. Every run records a size snapshot
    (pgrunbook.snapshots). Exit code 1 when a task failed or was interrupted.
    """
    profile = load_profile(profile_path)
    info = target_from(dsn).session("pgrunbook run")
    with err_console.status(f"pgrunbook run {cadence}") as status:
        report = run_cadence(
            info,
            Cadence(cadence),
            profile,
            schema=schema,
            dry_run=dry_run,
            batch_size=batch_size,
            plan_limit_bytes=plan_limit_mb * 1024 * 1024 if plan_limit_mb else None,
            on_task=lambda title: status.update(f"pgrunbook run {cadence}: {title}"),
            log=lambda text: err_console.print(text, markup=False, soft_wrap=True),
        )
    if output is not None:
        write_report(report, output)
    if as_json:
        emit_json(report.to_json())
    else:
        out_console.print(render(report))
        if output is not None:
            out_console.print(f"report written to {output}", markup=False)
    for task in report.problems:
        err_console.print(f"[red]{task.status}:[/] {escape(f'{task.title}: {task.error}')}")
    if report.exit_code:
        raise click.exceptions.Exit(report.exit_code)
