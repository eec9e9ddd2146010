"""``pgrunbook backup`` and ``pgrunbook restore``: the runbook's section 2 with pg_dump."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table as RichTable

from pgrunbook.backup import (
    BackupOptions,
    RestoreOptions,
    existing_tables,
    plan_backup,
    plan_restore,
    refuse_non_empty,
    run_restore,
    take_backup,
)
from pgrunbook.backup.dump import DEFAULT_LOCK_WAIT_MS, BackupResult
from pgrunbook.backup.restore import RestoreResult
from pgrunbook.backup.verify import TableCheck
from pgrunbook.cli.common import (
    F,
    confirm,
    dsn_option,
    emit_json,
    err_console,
    json_option,
    out_console,
    target_from,
    yes_option,
)
from pgrunbook.connect import connect


def _pg_bin_option(func: F) -> F:
    return click.option(
        "--pg-bin",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        metavar="DIR",
        help="Use pg_dump / pg_restore from this folder. Default: the newest found (the "
        "embedded package's, PATH, /usr/lib/postgresql/*/bin).",
    )(func)


def _dry_run_option(func: F) -> F:
    return click.option(
        "--dry-run", is_flag=True, help="Print the command line (password masked) and run nothing."
    )(func)


def size_text(size: int) -> str:
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1024
    return f"{value:,.1f} TB"  # pragma: no cover


def _rows(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _tables_table(title: str, tables: list[TableCheck]) -> RichTable:
    table = RichTable(title=title)
    for name in ("table", "estimated rows", "in backup"):
        table.add_column(name, justify="right" if name == "estimated rows" else "left")
    for t in tables:
        table.add_row(
            f"{t.schema}.{t.name}", _rows(t.estimated_rows), "yes" if t.in_backup else "MISSING"
        )
    return table


def _print_backup(result: BackupResult) -> None:
    plan, check = result.plan, result.verification
    out_console.print(_tables_table(f"backup of {plan.dbname}", list(check.tables)))
    state = "verified" if result.verified else "NOT verified"
    out_console.print(
        f"{plan.output}: {plan.format}, {size_text(result.size_bytes)} in "
        f"{result.duration_seconds:.2f} s (pg_dump {plan.pg_dump.version}, server "
        f"{plan.server_version}); {state}: {len(check.tables)} tables",
        soft_wrap=True,
        markup=False,
    )
    if check.problem:
        err_console.print(f"[red]verification:[/] {escape(check.problem)}", soft_wrap=True)
    if check.missing:
        missing = ", ".join(check.missing)
        err_console.print(f"[red]missing from the backup:[/] {escape(missing)}", soft_wrap=True)
    if result.record_error:
        err_console.print(
            f"[yellow]warning:[/] not recorded in pgrunbook.backups: {escape(result.record_error)}",
            soft_wrap=True,
        )


@click.command(short_help="Back up the database with pg_dump, verify it, record it.")
@dsn_option
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The file to write. Default: <database>_backup_YYYYMMDD_HHMMSS.dump "
    "(<database>_schema_YYYYMMDD_HHMMSS.sql with --schema-only) in the working directory.",
)
@click.option("--schema-only", is_flag=True, help="Write the schema as a plain SQL file.")
@click.option(
    "--lock-wait-timeout",
    "lock_wait_ms",
    type=click.IntRange(min=1),
    default=DEFAULT_LOCK_WAIT_MS,
    show_default=True,
    metavar="MS",
    help="pg_dump fails instead of waiting longer than this for a table lock.",
)
@_pg_bin_option
@_dry_run_option
@json_option
def backup(
    dsn: str | None,
    output: Path | None,
    schema_only: bool,
    lock_wait_ms: int,
    pg_bin: Path | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Back up the database with the real pg_dump over the direct connection: custom format
    with large objects (pg_dump -Fc -b), or --schema-only as a plain SQL file. pg_dump must be
    at least as new as the server. The file is then verified (pg_restore --list reads it and
    holds every table) and the backup recorded in pgrunbook.backups. The password reaches
    pg_dump only through PGPASSWORD. Exit 1 when pg_dump fails or verification does.
    """
    info = target_from(dsn).session("pg_dump")
    options = BackupOptions(
        output=output, schema_only=schema_only, lock_wait_timeout_ms=lock_wait_ms, pg_bin=pg_bin
    )
    with connect(info, autocommit=True) as conn:
        plan = plan_backup(conn, info, options)
        if dry_run:
            if as_json:
                emit_json({"dry_run": True, **plan.to_json()})
            else:
                out_console.print(plan.invocation.display(), soft_wrap=True, markup=False)
            return
        if not as_json:
            err_console.print(f"running {escape(plan.pg_dump.describe())} ...", soft_wrap=True)
        result = take_backup(conn, plan)
    if as_json:
        emit_json(result.to_json())
    else:
        _print_backup(result)
    if not result.verified:
        raise click.exceptions.Exit(1)


def _print_restore(result: RestoreResult) -> None:
    table = RichTable(title=f"restored into {result.plan.target.display()}")
    table.add_column("table")
    table.add_column("estimated rows", justify="right")
    for t in result.tables:
        table.add_row(f"{t.schema}.{t.name}", _rows(t.estimated_rows))
    out_console.print(table)
    out_console.print(
        f"{result.plan.file}: {len(result.tables)} tables restored in "
        f"{result.duration_seconds:.2f} s (pg_restore {result.plan.pg_restore.version})",
        soft_wrap=True,
        markup=False,
    )


@click.command(short_help="Restore a pg_dump archive into a database with pg_restore.")
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "--target", "target_dsn", required=True, metavar="URL", help="The database to restore into."
)
@click.option(
    "--clean",
    is_flag=True,
    help="Drop the archive's objects in the target first (--clean --if-exists); needs --yes.",
)
@click.option(
    "--owner/--no-owner",
    default=False,
    show_default=True,
    help="Restore the objects' owners (Neon: leave off, its roles differ).",
)
@click.option(
    "--acl/--no-acl",
    default=False,
    show_default=True,
    help="Restore GRANTs and REVOKEs (Neon: leave off).",
)
@click.option("--single-transaction", is_flag=True, help="All or nothing: one transaction.")
@_pg_bin_option
@_dry_run_option
@yes_option
@json_option
def restore(
    file: Path,
    target_dsn: str,
    clean: bool,
    owner: bool,
    acl: bool,
    single_transaction: bool,
    pg_bin: Path | None,
    dry_run: bool,
    yes: bool,
    as_json: bool,
) -> None:
    """Restore FILE (a pg_dump custom, directory or tar archive) into --target with the real
    pg_restore, by default with --no-owner --no-acl as Neon requires. A target that already
    holds tables in the archive's schemas is refused unless --clean --yes. Reports the tables
    restored with their estimated rows, and the duration. Exit 1 when pg_restore fails.
    """
    target = target_from(target_dsn).session("pg_restore")
    options = RestoreOptions(
        clean=clean, owner=owner, acl=acl, single_transaction=single_transaction, pg_bin=pg_bin
    )
    plan = plan_restore(file, target, options)
    if dry_run:
        if as_json:
            emit_json({"dry_run": True, **plan.to_json()})
        else:
            out_console.print(plan.invocation.display(), soft_wrap=True, markup=False)
        return
    with connect(target, autocommit=True) as conn:
        existing = existing_tables(conn, plan.toc.schemas)
        refuse_non_empty(plan, existing)
        if existing and not confirm(
            f"drop and replace the archive's objects in {target.display()} "
            f"({len(existing)} tables there now)",
            yes,
        ):
            raise click.exceptions.Exit(1)
        if not as_json:
            err_console.print(f"running {escape(plan.pg_restore.describe())} ...", soft_wrap=True)
        result = run_restore(conn, plan)
    if as_json:
        emit_json(result.to_json())
    else:
        _print_restore(result)
