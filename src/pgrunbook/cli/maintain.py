"""``pgrunbook maintain``: VACUUM (ANALYZE) and concurrent reindexing (runbook script 07)."""

from __future__ import annotations

import click
from rich import box
from rich.table import Table

from pgrunbook.cli.common import (
    confirm,
    dsn_option,
    emit_json,
    err_console,
    json_option,
    out_console,
    schema_option,
    target_from,
    yes_option,
)
from pgrunbook.cli.gate_options import Safety, backup_gate_options
from pgrunbook.cli.vacuum_bar import VacuumBar
from pgrunbook.connect import connect
from pgrunbook.maintain.choose import choose
from pgrunbook.maintain.run import maintain as run_maintain
from pgrunbook.maintain.run import reindex_sql, vacuum_sql
from pgrunbook.report.units import size

FULL_WARNING = (
    "VACUUM FULL rewrites each table under an ACCESS EXCLUSIVE lock held for the whole "
    "rewrite: the app can neither read nor write the table until it ends."
)


@click.command(short_help="VACUUM (ANALYZE) and REINDEX CONCURRENTLY what needs it (script 07).")
@dsn_option
@schema_option("Schema to maintain. Default: the URL's, or public.")
@click.option("--table", "tables", multiple=True, metavar="NAME", help="Only this table (repeat).")
@click.option("--dry-run", is_flag=True, help="List what would be done and why; change nothing.")
@click.option("--full", is_flag=True, help="VACUUM FULL instead (ACCESS EXCLUSIVE lock!).")
@yes_option
@backup_gate_options
@json_option
def maintain(
    dsn: str | None,
    schema: str | None,
    tables: tuple[str, ...],
    dry_run: bool,
    full: bool,
    yes: bool,
    safety: Safety,
    as_json: bool,
) -> None:
    """Vacuum the tables over the dead-tuple threshold, never analyzed, or high-traffic
    (Message, Notification, GiftSend), one at a time; then rebuild bloated btree indexes
    with REINDEX INDEX CONCURRENTLY. Waits for locks at most 1 s per try (retried), so it
    never queues behind DDL."""
    if full and not dry_run:
        err_console.print(f"[yellow]warning:[/] {FULL_WARNING}", soft_wrap=True)
        if not confirm("run VACUUM FULL?", yes):
            raise click.exceptions.Exit(1)
    target = target_from(dsn)
    info = target.session("maintenance")
    with connect(info, autocommit=True) as conn:
        if full and not dry_run:  # VACUUM FULL rewrites every table: have a way back first
            safety.check(conn, target)
        choice = choose(conn, schema or info.schema, tables)
        if dry_run:
            if as_json:
                emit_json(
                    {
                        "dry_run": True,
                        "tables": [
                            {**t.to_json(), "sql": vacuum_sql(t, full=full)} for t in choice.tables
                        ],
                        "indexes": [{**i.to_json(), "sql": reindex_sql(i)} for i in choice.indexes],
                        "notes": choice.notes,
                    }
                )
                return
            plan = Table(box=box.SIMPLE_HEAD, show_edge=False)
            for name in ("statement", "why"):
                plan.add_column(name)
            for t in choice.tables:
                plan.add_row(vacuum_sql(t, full=full), "; ".join(t.reasons))
            for i in choice.indexes:
                plan.add_row(reindex_sql(i), i.reason)
            out_console.print(plan)
            for note in choice.notes:
                out_console.print(f"  {note}", markup=False)
            out_console.print("Dry run: nothing was changed.")
            return
        # VACUUM FULL reports in pg_stat_progress_cluster: no bar for it
        bar_enabled = not as_json and not full and err_console.is_terminal
        with VacuumBar(info, conn.info.backend_pid, enabled=bar_enabled) as bar:
            report = run_maintain(conn, choice, full=full, on_start=bar.started)
    if as_json:
        emit_json({"dry_run": False, **report.to_json(), "notes": choice.notes})
        return
    done = Table(box=box.SIMPLE_HEAD, show_edge=False)
    for name in ("object", "dead before", "dead after", "size before", "size after", "s"):
        done.add_column(name)
    for r in report.tables:
        done.add_row(
            r.table.qualified,
            f"{r.before.dead_tuples:,}",
            f"{r.after.dead_tuples:,}",
            size(r.before.table_bytes),
            size(r.after.table_bytes),
            f"{r.seconds:.1f}",
        )
    for x in report.indexes:
        done.add_row(
            x.index.qualified, "", "", size(x.before.bytes), size(x.after.bytes), f"{x.seconds:.1f}"
        )
    out_console.print(done)
