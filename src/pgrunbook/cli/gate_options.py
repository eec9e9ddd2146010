"""``--backup``, ``--backup-max-age``, ``--backup-dir``, ``--preflight-seconds`` and ``--force``:
the pre-flight checklist and the safety gate of the commands that change data or take long
locks (``apply``, ``fix constraints``, ``cleanup --execute``, ``maintain --full``)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar, cast

import click
import psycopg
from rich.markup import escape

from pgrunbook.backup.gate import DEFAULT_MAX_AGE, MODES, GatePolicy, GateResult, ensure_backup
from pgrunbook.cli.common import err_console
from pgrunbook.cli.preflight_cmd import STATUS_STYLE
from pgrunbook.dsn import ConnInfo
from pgrunbook.errors import PgRunbookError
from pgrunbook.preflight import Preflight, preflight
from pgrunbook.preflight.checklist import DEFAULT, Thresholds
from pgrunbook.target import Target


class PreflightFailed(PgRunbookError):
    """A pre-flight item failed: nothing was changed (exit 1)."""

    exit_code = 1


F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Safety:
    """What ``--backup*``, ``--preflight-seconds`` and ``--force`` ask for: run ``check``
    once, after confirmation and before the first change."""

    backup_mode: str
    backup_max_age_hours: float
    backup_dir: Path
    preflight_seconds: float
    force: bool

    def check(self, conn: psycopg.Connection[Any], target: Target) -> GateResult:
        """The pre-flight checklist first (refusing on a failed item unless --force), then
        the safety gate (a recent backup, or one taken now)."""
        preflight_check(target, self.preflight_seconds, self.force)
        return gate(
            conn,
            target.session("the backup"),
            self.backup_mode,
            self.backup_max_age_hours,
            self.backup_dir,
        )


def backup_gate_options(func: F) -> F:
    """The options, handed to the command as one ``safety: Safety`` argument."""

    @functools.wraps(func)
    def command(
        *args: Any,
        backup_mode: str,
        backup_max_age_hours: float,
        backup_dir: Path,
        preflight_seconds: float,
        force: bool,
        **kwargs: Any,
    ) -> Any:
        safety = Safety(backup_mode, backup_max_age_hours, backup_dir, preflight_seconds, force)
        return func(*args, safety=safety, **kwargs)

    wrapped: Callable[..., Any] = command
    wrapped = click.option(
        "--force",
        is_flag=True,
        help="Go on although a pre-flight item failed (load, long transactions, lag).",
    )(wrapped)
    wrapped = click.option(
        "--preflight-seconds",
        type=click.FloatRange(min=0.1, max=60),
        default=2.0,
        show_default=True,
        envvar="PGRUNBOOK_PREFLIGHT_SECONDS",
        help="How long the pre-flight counts transactions for the transaction rate.",
    )(wrapped)
    wrapped = click.option(
        "--backup",
        "backup_mode",
        type=click.Choice(MODES),
        default="auto",
        show_default=True,
        envvar="PGRUNBOOK_BACKUP",
        show_envvar=True,
        help="Without a recent backup, take one first: auto (a Neon branch on Neon, pg_dump "
        "elsewhere), pg_dump, neon; or none (no way back: you say so).",
    )(wrapped)
    wrapped = click.option(
        "--backup-max-age",
        "backup_max_age_hours",
        type=click.FloatRange(min=0),
        default=DEFAULT_MAX_AGE.total_seconds() / 3600,
        show_default=True,
        metavar="HOURS",
        help="A backup recorded within this many hours is recent enough.",
    )(wrapped)
    wrapped = click.option(
        "--backup-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=Path(),
        show_default=True,
        help="Where a pg_dump taken by the gate is written.",
    )(wrapped)
    return cast(F, wrapped)


def preflight_check(
    target: Target, sample_seconds: float, force: bool, limits: Thresholds = DEFAULT
) -> Preflight:
    """The pre-flight checklist (without the backup item: the gate sees to that), on stderr;
    refuses (exit 1) on a failed item unless ``force``."""
    result = preflight(target, sample_seconds=sample_seconds, limits=limits, backup=False)
    for item in result.items:
        colour = STATUS_STYLE[item.status]
        err_console.print(
            f"pre-flight [{colour}]{item.status}[/] {item.name}: {escape(item.detail)}",
            soft_wrap=True,
        )
    if result.failed and not force:
        failed = result.failed[0]
        raise PreflightFailed(
            f"pre-flight failed: {failed.name}: {failed.detail}",
            (failed.fix + "; " if failed.fix else "") + "or pass --force to go on anyway",
        )
    return result


def gate(
    conn: psycopg.Connection[Any],
    info: ConnInfo,
    mode: str,
    max_age_hours: float,
    directory: Path,
) -> GateResult:
    """Run the gate, saying on stderr what it found or took."""
    policy = GatePolicy(
        mode=mode,  # type: ignore[arg-type]  # click.Choice(MODES)
        max_age=timedelta(hours=max_age_hours),
        directory=directory,
    )
    result = ensure_backup(
        conn,
        info,
        policy,
        say=lambda text: err_console.print(f"backup: {escape(text)}", soft_wrap=True),
    )
    colour = "yellow" if result.how == "none" else "green"
    err_console.print(f"[{colour}]backup:[/] {escape(result.detail)}", soft_wrap=True)
    return result
