"""``pgrunbook prisma sync``: Prisma migrations and schema.prisma edits for what pgrunbook
applied (or, with ``--planned``, would apply), so ``prisma migrate`` sees no drift."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape

from pgrunbook.cli.change import context
from pgrunbook.cli.common import (
    common_options,
    emit_json,
    err_console,
    json_option,
    out_console,
    prisma_schema_option,
)
from pgrunbook.errors import ConfigError
from pgrunbook.prisma.mode import find_project
from pgrunbook.prisma.sync import SyncPlan, plan_sync


@click.group(short_help="Prisma Migrate coexistence: migrations for pgrunbook's changes.")
def prisma() -> None:
    """Keep a Prisma app's migrations and schema.prisma in step with what pgrunbook does to
    its database, so prisma migrate sees no drift."""


@prisma.command(name="sync", short_help="Write Prisma migrations and schema edits for them.")
@common_options
@prisma_schema_option
@click.option(
    "--migrations",
    "migrations",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    metavar="DIR",
    help="Prisma's migrations folder. Default: migrations/ beside the schema file.",
)
@click.option(
    "--planned", is_flag=True, help="For what pgrunbook apply would do now, not what it did."
)
@click.option(
    "--dry-run", is_flag=True, help="Print the migration files and the schema diff; write nothing."
)
@json_option
def sync(
    dsn: str | None,
    schema: str | None,
    profile_path: Path | None,
    prisma_schema: Path | None,
    migrations: Path | None,
    planned: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Write, for the runbook changes pgrunbook applied to this database (its journal; with
    --planned: what apply would do now), new Prisma migration folders holding their SQL
    (re-runnable; each CONCURRENTLY statement in a folder of its own), the matching
    schema.prisma edits (@@index lines, the AuditLog model), and, for what pgrunbook rolled
    back since, the inverse migrations and the edits taken out. Existing migration folders
    are never changed. Prints the `npx prisma migrate resolve --applied` commands to run on
    every database where pgrunbook already did the work. A second run writes nothing."""
    project = find_project(Path.cwd(), prisma_schema)
    if project is None:
        raise ConfigError(
            "no Prisma schema found (looked for package.json prisma.schema, "
            "prisma/schema.prisma, schema.prisma, prisma/schema/)",
            "run it in the app's folder or pass --prisma-schema PATH",
        )
    folder = migrations if migrations is not None else project.migrations_dir
    with context(dsn, schema, profile_path, purpose="writing Prisma migrations") as (ctx, _):
        plan = plan_sync(
            ctx,
            project.schema,
            folder,
            planned=planned,
            schema_arg=str(prisma_schema) if prisma_schema is not None else None,
        )
    written = [] if dry_run else plan.write()
    for warning in plan.warnings:
        err_console.print(f"[yellow]warning:[/] {escape(warning)}", soft_wrap=True)
    if as_json:
        emit_json({**plan.to_json(), "dry_run": dry_run, "written": [str(p) for p in written]})
        return
    _report(plan, dry_run, written)


def _report(plan: SyncPlan, dry_run: bool, written: list[Path]) -> None:
    if not plan.changes:
        out_console.print(
            "nothing to write: the Prisma migrations and schema.prisma already hold what "
            "pgrunbook " + ("would apply" if plan.planned else "applied"),
            soft_wrap=True,
        )
        return
    if dry_run:
        for path, text in plan.files().items():
            if path in plan.schema_texts:
                continue
            click.echo(f"==> {path} (new)")
            click.echo(text)
        if plan.diff:
            click.echo(plan.diff, nl=False)
        err_console.print("dry run: nothing was written")
        return
    for path in written:
        click.echo(str(path))
    if plan.migrations:
        when = (
            "after pgrunbook apply has run there"
            if plan.planned
            else "where pgrunbook apply or rollback already ran"
        )
        out_console.print(
            f"\nOn every database {when}, record the new migrations as applied "
            "(do not run them there):",
            soft_wrap=True,
        )
        for command in plan.resolve_commands():
            click.echo(f"  {command}")
