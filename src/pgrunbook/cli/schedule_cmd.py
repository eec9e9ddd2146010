"""``pgrunbook schedule install|show|remove``: runbook section 8's schedule in pg_cron."""

from __future__ import annotations

from pathlib import Path
from typing import Final

import click
from rich.markup import escape
from rich.table import Table as RichTable

from pgrunbook.cleanup.batches import DEFAULT_BATCH_SIZE
from pgrunbook.cli.change import context
from pgrunbook.cli.common import (
    common_options,
    confirm,
    dry_run_option,
    emit_json,
    err_console,
    json_option,
    out_console,
    yes_option,
)
from pgrunbook.schedule import installer as schedule
from pgrunbook.schedule.cron import CronJob
from pgrunbook.schedule.fallback import Fallback, fallback
from pgrunbook.schedule.installer import Statement

FORCED: Final = "--crontab asked for crontab lines and systemd timers instead of pg_cron jobs"


def _jobs_table(title: str, jobs: list[CronJob]) -> RichTable:
    table = RichTable(title=title)
    for name in ("job", "schedule (UTC)", "active", "last run", "next run"):
        table.add_column(name, overflow="fold")
    for job in jobs:
        last = "-"
        if job.last_run is not None:
            run = job.last_run
            when = run.start_time.strftime("%Y-%m-%d %H:%M") if run.start_time else ""
            message = f" ({run.return_message})" if run.return_message else ""
            last = f"{run.status} {when}{message}"
        following = job.next_run.strftime("%Y-%m-%d %H:%M") if job.next_run else "-"
        table.add_row(
            job.name,
            job.schedule,
            "yes" if job.active else "no",
            escape(last),
            following,
        )
    return table


def _print_jobs(title: str, jobs: list[CronJob]) -> None:
    out_console.print(_jobs_table(title, jobs))
    for job in jobs:
        out_console.print(f"{job.name}: {job.command}", markup=False, soft_wrap=True)


def _print_sql(statements: list[Statement]) -> None:
    database = None
    for statement in statements:
        if statement.database != database:
            database = statement.database
            out_console.print(f"-- in database {database}", markup=False)
        out_console.print(f"{statement.sql};", markup=False, soft_wrap=True)


def _print_fallback(plan: Fallback) -> None:
    err_console.print(f"[yellow]no pg_cron jobs:[/] {escape(plan.reason)}", soft_wrap=True)
    err_console.print("Run the schedule from cron (crontab -e) or systemd instead:")
    out_console.print(plan.crontab_text(), markup=False, soft_wrap=True)
    for unit in plan.units:
        out_console.print(f"# /etc/systemd/system/{unit.name}", markup=False)
        out_console.print(unit.text, markup=False, soft_wrap=True)
    names = " ".join(u.name for u in plan.units if u.name.endswith(".timer"))
    out_console.print(f"# then: systemctl daemon-reload && systemctl enable --now {names}")


@click.group(short_help="Run the maintenance schedule in the database (pg_cron).")
def schedule_group() -> None:
    """Runbook section 8's maintenance schedule as pg_cron jobs inside the database:
    daily and weekly retention cleanups (weekly also ANALYZE), the monthly VACUUM (ANALYZE)
    of the high-traffic tables, and size snapshots. Without pg_cron, install prints crontab
    lines and systemd timers that call `pgrunbook run <cadence>` instead.
    """


@schedule_group.command(short_help="Create the routines and pg_cron jobs (idempotent).")
@common_options
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=DEFAULT_BATCH_SIZE,
    show_default=True,
    help="Rows per batch in the cleanup procedures (each batch its own transaction).",
)
@click.option(
    "--crontab",
    "force_crontab",
    is_flag=True,
    help="Print crontab lines and systemd timers even when pg_cron is available.",
)
@dry_run_option
@json_option
def install(
    dsn: str | None,
    schema: str | None,
    profile_path: Path | None,
    batch_size: int,
    force_crontab: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Install the schedule: procedures in the `pgrunbook` schema (one per retention
    policy, run_daily, run_weekly) and the pg_cron jobs that call them. Running it again
    replaces the jobs and routines (never duplicates them). Without pg_cron (or with
    --crontab), prints crontab lines and systemd timers instead, and says why.
    """

    def fallback_for(reason: str) -> Fallback:
        return fallback(reason, schema=schema, profile=profile_path)

    if force_crontab:
        plan = fallback_for(FORCED)
        if as_json:
            emit_json({"fallback": plan.to_json()})
        else:
            _print_fallback(plan)
        return
    with context(dsn, schema, profile_path, purpose="installing the schedule") as (ctx, _):
        info = ctx.info
        assert info is not None
        the_plan = schedule.plan(ctx.conn, ctx.schema, ctx.profile, batch_size=batch_size)
        result = schedule.install(
            ctx.conn,
            info,
            the_plan,
            dry_run=dry_run,
            fallback_for=fallback_for,
            neon=info.is_neon,
        )
    if as_json:
        emit_json(result.to_json())
        return
    for skip in the_plan.skipped:
        err_console.print(f"[yellow]skipped[/] {skip.policy}: {escape(skip.reason)}")
    if result.fallback is not None:
        _print_fallback(result.fallback)
        return
    if dry_run:
        err_console.print("dry run: nothing changed; install would run:")
        _print_sql(result.statements)
        return
    _print_jobs("pgrunbook schedule (pg_cron)", result.jobs)
    for routine in the_plan.routines:
        out_console.print(
            f"pgrunbook.{routine.name}(): {routine.does}", markup=False, soft_wrap=True
        )
    for name in result.unscheduled:
        out_console.print(f"unscheduled the old job {name}")
    for name in result.dropped:
        out_console.print(f"dropped the old routine pgrunbook.{name}()")


@schedule_group.command(short_help="List the jobs, their last and next runs.")
@common_options
@json_option
def show(dsn: str | None, schema: str | None, profile_path: Path | None, as_json: bool) -> None:
    """Show pgrunbook's pg_cron jobs for this database (schedule, command, active), their
    last run from cron.job_run_details (status, start, end, message), the next run, and the
    routines installed in the `pgrunbook` schema.
    """
    with context(dsn, schema, profile_path, purpose="showing the schedule") as (ctx, _):
        info = ctx.info
        assert info is not None
        shown = schedule.show(ctx.conn, info, neon=info.is_neon)
    if as_json:
        emit_json(shown.to_json())
        return
    if shown.note:
        err_console.print(f"[yellow]note:[/] {escape(shown.note)}", soft_wrap=True)
    if shown.jobs:
        _print_jobs("pgrunbook schedule (pg_cron)", shown.jobs)
    for name in shown.routines:
        out_console.print(f"routine pgrunbook.{name}()")


@schedule_group.command(short_help="Unschedule the jobs and drop the routines.")
@common_options
@dry_run_option
@yes_option
@json_option
def remove(
    dsn: str | None,
    schema: str | None,
    profile_path: Path | None,
    dry_run: bool,
    yes: bool,
    as_json: bool,
) -> None:
    """Remove the schedule: unschedule pgrunbook's pg_cron jobs for this database and drop
    the routines install created. Its history (cleanup_runs, snapshots) stays.
    """

    def agree(removed: schedule.Removed) -> bool:
        what = f"{len(removed.jobs)} pg_cron jobs and {len(removed.routines)} routines"
        return confirm(f"remove {what}", yes)

    with context(dsn, schema, profile_path, purpose="removing the schedule") as (ctx, _):
        info = ctx.info
        assert info is not None
        removed = schedule.remove(ctx.conn, info, dry_run=dry_run, confirm=agree, neon=info.is_neon)
    if as_json:
        emit_json(removed.to_json())
        return
    if removed.note:
        err_console.print(f"[yellow]note:[/] {escape(removed.note)}", soft_wrap=True)
    if removed.empty:
        out_console.print("nothing to remove: no pgrunbook jobs or routines")
        return
    if dry_run:
        err_console.print("dry run: nothing changed; remove would run:")
        _print_sql(removed.statements)
        return
    for job in removed.jobs:
        out_console.print(f"unscheduled {job.name}")
    for name in removed.routines:
        out_console.print(f"dropped pgrunbook.{name}()")
