"""``pgrunbook rehearse``: the runbook's "test scripts in a Neon branch first", automated."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape

from pgrunbook.change.runner import ApplyPolicy
from pgrunbook.change.step import StepOptions
from pgrunbook.change.steps import select
from pgrunbook.cli.change import steps_argument
from pgrunbook.cli.common import (
    common_options,
    emit_json,
    err_console,
    json_option,
    out_console,
    policy_options,
    target_from,
)
from pgrunbook.profile import load_profile
from pgrunbook.rehearse import rehearse as run_rehearsal
from pgrunbook.rehearse import report
from pgrunbook.rehearse.scratch import DEFAULT_MAX_SIZE_MB


@click.command(short_help="Apply and verify the steps on a throwaway copy first.")
@steps_argument
@common_options
@click.option(
    "--via",
    type=click.Choice(["auto", "neon", "copy"]),
    default="auto",
    show_default=True,
    help="Where to rehearse: a Neon branch (auto on a Neon host) or a scratch database copy.",
)
@click.option("--keep", is_flag=True, help="Keep the branch or scratch database afterwards.")
@click.option(
    "--max-size",
    "max_size_mb",
    type=click.IntRange(min=0),
    default=DEFAULT_MAX_SIZE_MB,
    show_default=True,
    metavar="MB",
    help="Largest database a scratch copy is made of (pg_database_size).",
)
@click.option(
    "--project", metavar="ID", default=None, help="Neon project id. Default: NEON_PROJECT_ID."
)
@click.option(
    "--parent",
    metavar="BRANCH",
    default=None,
    help="Neon: the branch to copy. Default: the project's default branch.",
)
@click.option(
    "--pg-bin",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None,
    help="Directory with pg_dump/pg_restore for a dump copy.",
)
@policy_options
@json_option
def rehearse(
    step_ids: tuple[str, ...],
    dsn: str | None,
    schema: str | None,
    profile_path: Path | None,
    via: str,
    keep: bool,
    max_size_mb: int,
    project: str | None,
    parent: str | None,
    pg_bin: Path | None,
    lock_timeout_ms: int,
    budget_seconds: float,
    as_json: bool,
) -> None:
    """Rehearse the runbook's changes on a short-lived copy of the database: apply and
    verify the steps there, report each step's duration, operations, strongest lock and
    problems, then remove the copy (--keep keeps it). On a Neon host (or --via neon) the
    copy is a new Neon branch with a compute; elsewhere a scratch database
    <db>_rehearse_<timestamp> (CREATE DATABASE ... TEMPLATE when no one else is connected,
    else pg_dump and pg_restore, up to --max-size). The database itself is never changed.
    Exit code 1 when a step was refused, a check failed or an error happened on the copy.

    STEP: indexes, triggers, audit, roles, constraints (default: all, in runbook order).
    """
    steps = select(step_ids)
    profile = load_profile(profile_path)
    source = target_from(dsn).session("a rehearsal")
    policy = ApplyPolicy(lock_timeout_ms=lock_timeout_ms, budget_seconds=budget_seconds)

    def say(text: str) -> None:
        if not as_json:
            err_console.print(escape(text), soft_wrap=True)

    result = run_rehearsal(
        source,
        profile,
        steps,
        via="neon" if via == "neon" else "copy" if via == "copy" else "auto",
        keep=keep,
        max_size_mb=max_size_mb,
        pg_bin=pg_bin,
        project=project,
        parent=parent,
        schema=schema,
        options=StepOptions(),
        policy=policy,
        say=say,
    )
    if as_json:
        emit_json(result.to_json())
    else:
        out_console.print(report.render(result))
        if keep:
            out_console.print(f"kept {result.copy['kind']}: {result.copy['name']}", markup=False)
    if result.exit_code:
        raise click.exceptions.Exit(result.exit_code)
