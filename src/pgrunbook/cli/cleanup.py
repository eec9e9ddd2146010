"""``pgrunbook cleanup``: the runbook's script 08 (retention policies, batched deletes)."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

import click
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table as RichTable

from pgrunbook.catalog import load_catalog
from pgrunbook.cleanup import (
    BatchProgress,
    CleanupResult,
    DryRun,
    dry_run,
    resolve_policies,
    run_cleanup,
)
from pgrunbook.cleanup.batches import DEFAULT_BATCH_SIZE, BatchOrder
from pgrunbook.cli.change import context
from pgrunbook.cli.common import (
    common_options,
    confirm,
    emit_json,
    err_console,
    json_option,
    out_console,
    yes_option,
)
from pgrunbook.cli.gate_options import Safety, backup_gate_options


@contextmanager
def _stop_on_sigint() -> Iterator[list[bool]]:
    """The first Ctrl-C asks the loop to stop after the current batch; a second one aborts."""
    flag = [False]
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum: int, frame: FrameType | None) -> None:
        if flag[0]:
            raise KeyboardInterrupt
        flag[0] = True
        err_console.print("stopping after the current batch (Ctrl-C again to abort it)")

    signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


def _dry_table(runs: list[DryRun]) -> RichTable:
    table = RichTable(title="cleanup dry run (nothing deleted)")
    for name in ("policy", "table", "rows", "oldest", "newest"):
        table.add_column(name, justify="right" if name == "rows" else "left")
    for r in runs:
        table.add_row(r.policy, r.table, f"{r.rows:,}", str(r.oldest or "-"), str(r.newest or "-"))
    return table


def _summary(results: list[CleanupResult]) -> RichTable:
    table = RichTable(title="cleanup")
    for name in ("policy", "table", "deleted", "batches", "seconds", "rows/s", "state"):
        table.add_column(name)
    for r in results:
        state = "interrupted: run again to finish" if r.interrupted else "done"
        table.add_row(
            r.policy,
            r.table,
            f"{r.deleted:,}",
            str(r.batches),
            f"{r.seconds:.1f}",
            f"{r.rows_per_second:,.0f}",
            state + (", vacuumed" if r.vacuumed else ""),
        )
    return table


@click.command(short_help="Delete rows past the retention policies, in batches (script 08).")
@common_options
@click.option("--policy", "policies", multiple=True, metavar="NAME", help="Only this policy.")
@click.option("--execute", is_flag=True, help="Delete (default: a dry run that counts).")
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=DEFAULT_BATCH_SIZE,
    show_default=True,
    help="Rows per batch (each batch its own transaction).",
)
@click.option(
    "--sleep",
    "sleep_seconds",
    type=click.FloatRange(min=0),
    default=0.0,
    help="Seconds to pause between batches.",
)
@click.option(
    "--order",
    type=click.Choice(["blocks", "key"]),
    default="blocks",
    show_default=True,
    help="Batches by heap block range (reads each page once) or in primary-key order.",
)
@click.option("--vacuum", is_flag=True, help="VACUUM (ANALYZE) each table afterwards.")
@backup_gate_options
@yes_option
@json_option
def cleanup(
    dsn: str | None,
    schema: str | None,
    profile_path: Path | None,
    policies: tuple[str, ...],
    execute: bool,
    batch_size: int,
    sleep_seconds: float,
    order: BatchOrder,
    vacuum: bool,
    safety: Safety,
    yes: bool,
    as_json: bool,
) -> None:
    """Apply the profile's retention policies (expired refresh tokens, old read
    notifications, and your own). By default only counts what each would delete, with the
    oldest and newest timestamps and the SQL; --execute deletes in short batches (by heap
    block range, or --order key), re-checking the policy on every row it deletes and
    leaving rows the app holds for the next run. Ctrl-C stops after the current batch.
    """
    with context(dsn, schema, profile_path, purpose="cleaning up old rows") as (ctx, target):
        catalog = load_catalog(ctx.conn, ctx.schema)
        resolved, skipped = resolve_policies(catalog, ctx.profile.retention, policies)
        for skip in skipped:
            err_console.print(f"[yellow]skipped[/] {skip.policy}: {escape(skip.reason)}")
        plans = [dry_run(ctx.conn, p, batch_size, order) for p in resolved]
        skipped_json = [{"policy": s.policy, "reason": s.reason} for s in skipped]
        if not execute:
            if as_json:
                emit_json({"dry_run": [p.to_json() for p in plans], "skipped": skipped_json})
                return
            out_console.print(_dry_table(plans))
            for p in plans:
                out_console.print(f"-- {p.policy}\n{p.sql};", soft_wrap=True, markup=False)
            return
        total = sum(p.rows for p in plans)
        if total and not confirm(f"delete {total:,} rows", yes):
            raise click.exceptions.Exit(1)
        if total:
            safety.check(ctx.conn, target)
        results: list[CleanupResult] = []
        bars = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]} rows/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err_console,
            disable=as_json,
        )
        with bars, _stop_on_sigint() as stop:
            for resolved_policy, plan in zip(resolved, plans, strict=True):
                task = bars.add_task(plan.policy, total=plan.rows, rate="0")

                def update(progress: BatchProgress, task_id: int = task) -> None:
                    rate = progress.deleted / progress.seconds if progress.seconds else 0.0
                    bars.update(task_id, completed=progress.deleted, rate=f"{rate:,.0f}")  # type: ignore[arg-type]

                result = run_cleanup(
                    ctx.conn,
                    resolved_policy,
                    batch_size=batch_size,
                    sleep_seconds=sleep_seconds,
                    by=order,
                    on_batch=update,
                    should_stop=lambda: stop[0],
                    vacuum=vacuum,
                )
                results.append(result)
                if result.interrupted:
                    break
    if as_json:
        emit_json({"results": [r.to_json() for r in results], "skipped": skipped_json})
    else:
        out_console.print(_summary(results))
    if any(r.interrupted for r in results):
        raise click.exceptions.Exit(130)
