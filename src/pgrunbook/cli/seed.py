"""``pgrunbook seed``: load the reference schema and synthetic data."""

from __future__ import annotations

from datetime import datetime

import click
from rich.table import Table

from pgrunbook.cli.common import (
    F,
    confirm,
    dry_run_option,
    dsn_option,
    emit_json,
    err_console,
    json_option,
    out_console,
    target_from,
    yes_option,
)
from pgrunbook.cli.progress import table_progress
from pgrunbook.connect import connect
from pgrunbook.reference.model import ALI_SCHEMA
from pgrunbook.reference.naming import Naming
from pgrunbook.reference.render_sql import load_statements
from pgrunbook.seed import SCALE_NAMES, SeedReport
from pgrunbook.seed import seed as run_seed
from pgrunbook.seed.load import ensure_empty, expected_rows


def naming_option(func: F) -> F:
    return click.option(
        "--naming",
        type=click.Choice([n.value for n in Naming]),
        default=Naming.PRISMA.value,
        show_default=True,
        help='Table and column names: Prisma\'s ("Message"."roomId") or snake_case '
        "(messages.room_id).",
    )(func)


@click.command()
@dsn_option
@click.option(
    "--scale",
    type=click.Choice(SCALE_NAMES),
    default="small",
    show_default=True,
    help="About 10k / 200k / 2M / 10M messages; other tables in proportion.",
)
@naming_option
@click.option("--seed", "seed_value", type=int, default=42, show_default=True, help="Random seed.")
@click.option(
    "--anchor",
    type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"]),
    default=None,
    help="Timestamps are relative to this UTC time (default: now). Same seed and anchor "
    "give identical data.",
)
@click.option(
    "--force", is_flag=True, help="Drop existing reference tables and types first (asks first)."
)
@yes_option
@dry_run_option
@json_option
def seed(
    dsn: str | None,
    scale: str,
    naming: str,
    seed_value: int,
    anchor: datetime | None,
    force: bool,
    yes: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Load the Ali reference schema and deterministic synthetic data with known defects.

    Refuses a database whose schema already holds tables, unless --force. The data has hot
    rooms and power users, and injects the anomalies the runbook hunts for in exact counts
    (orphans, negative balances, self-follows, invalid emails, expired tokens, a duplicate
    and an unused index, dead tuples); --json lists them.
    """
    target = target_from(dsn)
    info = target.session("seeding (DDL and COPY)")
    chosen = Naming(naming)
    if anchor is not None and anchor.tzinfo is None:
        from datetime import UTC

        anchor = anchor.replace(tzinfo=UTC)
    if dry_run:
        statements = load_statements(ALI_SCHEMA, chosen)
        out_console.print(f"-- pgrunbook seed --dry-run: {info.display()}", markup=False)
        for statement in statements.pre_data:
            out_console.print(statement.as_string() + ";", markup=False)
        for table, rows in expected_rows(scale).items():
            out_console.print(f"-- COPY about {rows} rows into {chosen.table(table)}", markup=False)
        for statement in statements.post_data:
            out_console.print(statement.as_string() + ";", markup=False)
        out_console.print("-- then VACUUM (ANALYZE) every table", markup=False)
        return
    with connect(info) as conn:
        present = ensure_empty(conn, info, force)
    if present and not confirm(
        f"drop the reference tables and types in {info.display()} and re-seed", yes
    ):
        raise click.exceptions.Abort()
    err_console.print(
        f"seeding {info.display()} at scale {scale} ({chosen.value} naming, seed {seed_value})",
        markup=False,
        soft_wrap=True,
    )
    with table_progress(enabled=not as_json) as progress:
        report = run_seed(
            info,
            scale=scale,
            naming=chosen,
            seed=seed_value,
            anchor=anchor,
            force=force,
            progress=progress,
        )
    if as_json:
        emit_json(report.to_json())
    else:
        print_report(report)


def print_report(report: SeedReport) -> None:
    naming = Naming(report.naming)
    rows = Table(title="Rows loaded", title_justify="left")
    rows.add_column("table")
    rows.add_column("rows", justify="right")
    for table, count in report.rows.items():
        rows.add_row(naming.table(table), f"{count:,}")
    rows.add_row("total", f"{report.total_rows:,}", style="bold")
    out_console.print(rows)
    defects = Table(title="Injected defects", title_justify="left")
    defects.add_column("kind")
    defects.add_column("count / objects", justify="right")
    for kind, value in report.anomalies.items():
        if isinstance(value, list):
            shown = ", ".join(value) if len(value) <= 3 else f"{len(value)} columns"
        elif isinstance(value, dict):
            shown = ", ".join(f"{k}={v}" for k, v in value.items())
        else:
            shown = f"{value:,}"
        defects.add_row(kind, shown)
    out_console.print(defects)
    secs = report.seconds
    out_console.print(
        f"{report.total_rows:,} rows in {secs['total']:.1f}s: COPY {secs['copy']:.1f}s "
        f"({report.load_rows_per_second:,.0f} rows/s), keys and indexes "
        f"{secs['keys_and_indexes']:.1f}s, VACUUM (ANALYZE) {secs['vacuum_analyze']:.1f}s; "
        f"{report.overall_rows_per_second:,.0f} rows/s overall",
        markup=False,
    )
