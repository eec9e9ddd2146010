"""Options and output helpers shared by every command."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.markup import escape

from pgrunbook.change.runner import ApplyPolicy
from pgrunbook.prisma.mode import PrismaMode, find_schema
from pgrunbook.target import Target, resolve_target

F = TypeVar("F", bound=Callable[..., Any])

# Human output and progress go to stderr; stdout carries results (and only JSON with --json).
err_console = Console(stderr=True, highlight=False)
out_console = Console(highlight=False)


def dsn_option(func: F) -> F:
    return click.option(
        "--dsn",
        metavar="URL",
        default=None,
        help="Connection URL. Default: DIRECT_URL / DATABASE_URL from the environment, "
        "then from .env in the working directory.",
    )(func)


def schema_option(
    help: str = "Schema to inspect. Default: the URL's, or public.",
) -> Callable[[F], F]:
    """``--schema NAME``; commands that read only some sections say which in ``help``."""
    return click.option("--schema", default=None, metavar="NAME", help=help)


def json_option(func: F) -> F:
    return click.option(
        "--json", "as_json", is_flag=True, help="Print one JSON document to stdout."
    )(func)


def yes_option(func: F) -> F:
    return click.option(
        "--yes",
        "-y",
        is_flag=True,
        help="Do not ask for confirmation (needed when not interactive).",
    )(func)


def dry_run_option(func: F) -> F:
    return click.option(
        "--dry-run", is_flag=True, help="Print the SQL that would run and change nothing."
    )(func)


def config_option(func: F) -> F:
    return click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Config file with thresholds. Default: pgrunbook.toml in the working directory.",
    )(func)


def profile_option(func: F) -> F:
    return click.option(
        "--profile",
        "profile_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Profile file (the app's constraints, retention, ...). Default: the built-in Ali one.",
    )(func)


def _existing_schema(ctx: click.Context, param: click.Parameter, path: Path | None) -> Path | None:
    if path is not None:
        find_schema(Path.cwd(), path)  # a missing path: one line (ConfigError), before connecting
    return path


def prisma_schema_option(func: F) -> F:
    """``--prisma-schema PATH``: the app's schema.prisma (or a folder of .prisma files)."""
    return click.option(
        "--prisma-schema",
        "prisma_schema",
        type=click.Path(path_type=Path),
        default=None,
        metavar="PATH",
        callback=_existing_schema,
        help="The app's schema.prisma, or its folder of .prisma files. Default: as the Prisma "
        "CLI finds it (package.json prisma.schema, prisma/schema.prisma, ...).",
    )(func)


def prisma_line(mode: PrismaMode, schema: str) -> str:
    """One line: whether Prisma mode is on, and why."""
    if mode.on:
        relation_mode = f", relationMode {mode.schema.relation_mode}" if mode.schema else ""
        return f"Prisma mode: on ({'; '.join(mode.reasons)}{relation_mode})"
    return (
        f"Prisma mode: off (no {schema}._prisma_migrations table, no Prisma schema found; "
        "--prisma-schema names one)"
    )


plan_limit_option = click.option(
    "--plan-limit",
    "plan_limit_mb",
    type=click.IntRange(min=1),
    default=None,
    metavar="MB",
    help="Storage limit of your plan in MB (default on a Neon host: 512, the Free plan).",
)


def policy_options(func: F) -> F:
    """``--lock-timeout`` and ``--budget``: how the commands that change the database wait
    for locks (``ApplyPolicy``)."""
    func = click.option(
        "--lock-timeout",
        "lock_timeout_ms",
        type=click.IntRange(min=1, max=60_000),
        default=ApplyPolicy.lock_timeout_ms,
        show_default=True,
        metavar="MS",
        help="Longest the app may wait behind one of pgrunbook's locks.",
    )(func)
    return click.option(
        "--budget",
        "budget_seconds",
        type=click.FloatRange(min=1),
        default=ApplyPolicy.budget_seconds,
        show_default=True,
        metavar="SECONDS",
        help="Per operation: how long to wait for blockers and retry before giving up.",
    )(func)


def common_options(func: F) -> F:
    """``--dsn``, ``--schema`` and ``--profile``: where the change commands work."""
    for option in (dsn_option, schema_option(), profile_option):
        func = option(func)
    return func


def target_from(dsn: str | None) -> Target:
    return resolve_target(
        dsn, warn=lambda text: err_console.print(f"[yellow]note:[/] {escape(text)}", soft_wrap=True)
    )


def emit_json(document: object) -> None:
    sys.stdout.write(json.dumps(document, indent=2, default=str, sort_keys=False) + "\n")


def confirm(question: str, yes: bool) -> bool:
    """True when the user agreed (or passed --yes); refuses when not interactive."""
    if yes:
        return True
    if not sys.stdin.isatty():
        from pgrunbook.errors import ConfigError

        raise ConfigError(f"{question} needs confirmation", "pass --yes to run non-interactively")
    return click.confirm(question, default=False, err=True)
