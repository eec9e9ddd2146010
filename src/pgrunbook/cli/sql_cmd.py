"""``pgrunbook sql export DIR``: the runbook's ten psql scripts and the rollback scripts."""

from __future__ import annotations

from pathlib import Path

import click

from pgrunbook.cli.change import context
from pgrunbook.cli.common import dsn_option, err_console, profile_option, schema_option
from pgrunbook.sqlexport import export_scripts


@click.group(short_help="psql-runnable scripts rendered from pgrunbook's definitions.")
def sql() -> None:
    """SQL scripts for those who still run the runbook with psql's \\i."""


@sql.command(name="export", short_help="Write 01_discovery.sql ... and rollback_*.sql to DIR.")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@dsn_option
@schema_option()
@profile_option
@click.option("--overwrite", is_flag=True, help="Replace scripts already in DIR.")
def export(
    directory: Path,
    dsn: str | None,
    schema: str | None,
    profile_path: Path | None,
    overwrite: bool,
) -> None:
    """Write the runbook's scripts 01-10 and rollback_<step>.sql for this database (its
    schema and naming), from the same definitions apply, verify and rollback use. Run them
    with psql -X -v ON_ERROR_STOP=1 -f FILE (02 without a transaction wrapper)."""
    with context(dsn, schema, profile_path, purpose="exporting scripts") as (ctx, _):
        written = export_scripts(ctx, directory, overwrite=overwrite)
    for path in written:
        click.echo(str(path))
    err_console.print(f"wrote {len(written)} scripts to {directory}")
