"""``pgrunbook branch``: Neon branches as backups (runbook section 2) and the way back
(section 6, the "nuclear option"), through the Neon API v2."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click
from rich.markup import escape
from rich.table import Table as RichTable

from pgrunbook.cli.common import (
    confirm,
    emit_json,
    err_console,
    json_option,
    out_console,
    yes_option,
)
from pgrunbook.neon import Branch, NeonApi, NeonBranches, NeonSettings
from pgrunbook.neon.client import backup_branch_name

F = TypeVar("F", bound=Callable[..., Any])


def project_option(func: F) -> F:
    return click.option(
        "--project",
        metavar="ID",
        default=None,
        help="Neon project id. Default: NEON_PROJECT_ID.",
    )(func)


def _note(text: str) -> None:
    err_console.print(f"[yellow]note:[/] {escape(text)}", soft_wrap=True)


@contextmanager
def neon_branches(project: str | None, quiet: bool = False) -> Iterator[NeonBranches]:
    """The project's branches API (``NEON_API_KEY``, ``NEON_API_URL``), closed afterwards;
    retries are noted on stderr unless ``quiet``."""
    settings = NeonSettings.from_env(project)
    with NeonApi(settings, on_retry=None if quiet else _note) as api:
        yield NeonBranches(api)


def _label(branch: Branch) -> str:
    return f"{branch.name} ({branch.id})"


@click.group(short_help="Neon branches: create, list, delete, restore.")
def branch() -> None:
    """Neon branches through the Neon API v2 (NEON_API_KEY, and the project from --project
    or NEON_PROJECT_ID): a branch is an instant copy-on-write backup of the database
    (runbook section 2), and restoring a branch from another is the runbook's way back
    (section 6). Each command waits for the operations Neon starts to finish."""


@branch.command("create", short_help="Create a branch with a compute (a backup).")
@click.argument("name", required=False)
@click.option(
    "--parent", metavar="NAME", default=None, help="Parent branch. Default: the default branch."
)
@click.option(
    "--show-uri", is_flag=True, help="Print the connection URI with its password (default: masked)."
)
@project_option
@json_option
def create(
    name: str | None, parent: str | None, show_uri: bool, project: str | None, as_json: bool
) -> None:
    """Create branch NAME (default backup-YYYYMMDD-HHMM, UTC) from --parent or the default
    branch, with a read-write compute, and wait until it is ready. Prints its id and the
    connection URI (password masked unless --show-uri)."""
    name = name or backup_branch_name()
    started = time.monotonic()
    with neon_branches(project, quiet=as_json) as neon:
        parent_branch = neon.find(parent) if parent else None
        if not as_json:
            source = parent_branch.name if parent_branch else "the default branch"
            err_console.print(f"creating Neon branch {escape(name)} from {escape(source)}")
        created = neon.create(name, parent_branch)
        polls = neon.polls
    seconds = time.monotonic() - started
    uri = created.connection_uri if show_uri else created.masked_uri
    if as_json:
        document = created.branch.to_json(parent_branch.name if parent_branch else None)
        emit_json(
            {
                "branch": document,
                "connection_uri": uri,
                "seconds": round(seconds, 2),
                "polls": polls,
            }
        )
        return
    out_console.print(
        f"created branch {escape(_label(created.branch))}, {created.branch.current_state}, "
        f"in {seconds:.1f} s",
        soft_wrap=True,
    )
    out_console.print(f"connection: {uri or '-'}", soft_wrap=True, markup=False)


@branch.command("list", short_help="List the project's branches.")
@project_option
@json_option
def list_branches(project: str | None, as_json: bool) -> None:
    """List the project's branches: name, id, parent, created, current state."""
    with neon_branches(project, quiet=as_json) as neon:
        branches = neon.list()
        project_id = neon.api.settings.project_id
    names = {b.id: b.name for b in branches}
    if as_json:
        emit_json(
            {
                "project_id": project_id,
                "branches": [b.to_json(names.get(b.parent_id)) for b in branches],
            }
        )
        return
    table = RichTable(title=f"Neon project {project_id}")
    for column in ("name", "id", "parent", "created (UTC)", "state"):
        table.add_column(column, overflow="fold")
    for b in branches:
        table.add_row(
            escape(b.name) + (" (default)" if b.default else ""),
            b.id,
            escape(names.get(b.parent_id, b.parent_id or "-")),
            b.created_at.replace("T", " ")[:16],
            b.current_state,
        )
    out_console.print(table)


@branch.command("delete", short_help="Delete a branch and its computes.")
@click.argument("name")
@click.option("--dry-run", is_flag=True, help="Say what would be deleted and delete nothing.")
@yes_option
@project_option
@json_option
def delete(name: str, dry_run: bool, yes: bool, project: str | None, as_json: bool) -> None:
    """Delete branch NAME (its computes go with it). Asks first; --yes when not interactive."""
    with neon_branches(project, quiet=as_json) as neon:
        target = neon.find(name)
        if dry_run:
            if as_json:
                emit_json({"dry_run": True, "branch": target.to_json()})
            else:
                out_console.print(
                    f"would delete branch {escape(_label(target))}, created {target.created_at}"
                )
            return
        if not confirm(f"delete Neon branch {_label(target)}", yes):
            raise click.exceptions.Exit(1)
        neon.delete(target)
    if as_json:
        emit_json({"deleted": target.to_json()})
    else:
        out_console.print(f"deleted branch {escape(_label(target))}")


@branch.command("restore", short_help="Reset a branch to another's state (the way back).")
@click.argument("target")
@click.option("--from", "source", required=True, metavar="SOURCE", help="Branch to copy.")
@click.option(
    "--preserve-under",
    metavar="NAME",
    default=None,
    help="Keep TARGET's current state as a new branch of this name.",
)
@click.option("--dry-run", is_flag=True, help="Say what would happen and change nothing.")
@yes_option
@project_option
@json_option
def restore(
    target: str,
    source: str,
    preserve_under: str | None,
    dry_run: bool,
    yes: bool,
    project: str | None,
    as_json: bool,
) -> None:
    """Reset branch TARGET to the current state of branch SOURCE (the runbook's "nuclear
    option": everything written to TARGET since is replaced). Its connection URI stays the
    same. Asks first (--yes when not interactive); --preserve-under NAME keeps the old
    state as a branch."""
    with neon_branches(project, quiet=as_json) as neon:
        branches = neon.list()
        target_branch = neon.find(target, branches)
        source_branch = neon.find(source, branches)
        what = f"reset Neon branch {_label(target_branch)} to the state of {_label(source_branch)}"
        kept = (
            f"its current state kept as {preserve_under!r}"
            if preserve_under
            else "its current state is lost (--preserve-under NAME keeps it)"
        )
        if dry_run:
            if as_json:
                emit_json(
                    {
                        "dry_run": True,
                        "target": target_branch.to_json(),
                        "source": source_branch.to_json(),
                        "preserve_under": preserve_under,
                    }
                )
            else:
                out_console.print(f"would {escape(what)}; {escape(kept)}", soft_wrap=True)
            return
        if not confirm(f"{what}; {kept}", yes):
            raise click.exceptions.Exit(1)
        started = time.monotonic()
        restored = neon.restore(target_branch, source_branch, preserve_under)
        seconds = time.monotonic() - started
    if as_json:
        emit_json(
            {
                "restored": restored.to_json(),
                "source": source_branch.to_json(),
                "preserve_under": preserve_under,
                "seconds": round(seconds, 2),
            }
        )
        return
    out_console.print(
        f"restored branch {escape(_label(restored))} from {escape(source_branch.name)} "
        f"in {seconds:.1f} s"
        + (f"; old state kept as {escape(preserve_under)}" if preserve_under else ""),
        soft_wrap=True,
    )
