"""``pgrunbook preflight``: the runbook's "Before Starting" checklist, measured."""

from __future__ import annotations

from datetime import timedelta

import click
from rich import box
from rich.markup import escape
from rich.table import Table

from pgrunbook.cli.common import dsn_option, emit_json, json_option, out_console, target_from
from pgrunbook.preflight import preflight as run_preflight
from pgrunbook.preflight.checklist import DEFAULT, Thresholds

STATUS_STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red"}  # a checklist item's


@click.command(short_help="The 'Before Starting' checklist: load, backup, endpoint.")
@dsn_option
@click.option(
    "--sample-seconds",
    type=click.FloatRange(min=0.1, max=60),
    default=2.0,
    show_default=True,
    help="How long to count transactions for the transaction rate.",
)
@click.option(
    "--backup-max-age",
    type=click.FloatRange(min=0),
    default=DEFAULT.backup_max_age.total_seconds() / 3600,
    show_default=True,
    metavar="HOURS",
    help="A backup older than this is no backup.",
)
@json_option
def preflight(dsn: str | None, sample_seconds: float, backup_max_age: float, as_json: bool) -> None:
    """Check, read-only, what the runbook asks before any change: the current load
    (connections, transactions per second, long-running transactions, replication lag), a
    recent verified backup recorded in the database, and a direct (not pooled) endpoint for
    the changes. Exit 1 when an item fails."""
    limits = Thresholds(backup_max_age=timedelta(hours=backup_max_age))
    result = run_preflight(target_from(dsn), sample_seconds=sample_seconds, limits=limits)
    if as_json:
        emit_json(result.to_json())
    else:
        table = Table(
            box=box.SIMPLE_HEAD, show_edge=False, title="pre-flight (runbook: Before Starting)"
        )
        for column in ("", "item", "measured", "what to do"):
            table.add_column(column, overflow="fold")
        for item in result.items:
            style = STATUS_STYLE[item.status]
            table.add_row(
                f"[{style}]{item.status}[/]", item.name, escape(item.detail), escape(item.fix or "")
            )
        out_console.print(table)
    if not result.passed:
        raise click.exceptions.Exit(1)
