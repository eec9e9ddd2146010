"""``pgrunbook plan/apply/verify/rollback/status``: the runbook's scripts 02-06.

Each command parses its options and makes one call into ``pgrunbook.change.engine``; this
module only renders the results (tables on stdout, progress on stderr, or ``--json``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

import click
import psycopg
from rich.markup import escape

from pgrunbook.change import engine
from pgrunbook.change.operation import Operation
from pgrunbook.change.runner import ApplyPolicy, Event
from pgrunbook.change.step import StepContext, StepOptions, StepPlan
from pgrunbook.change.steps import select
from pgrunbook.cli import change_render as render
from pgrunbook.cli.build_progress import BuildBars
from pgrunbook.cli.common import (
    F,
    common_options,
    confirm,
    dry_run_option,
    emit_json,
    err_console,
    json_option,
    out_console,
    policy_options,
    prisma_line,
    prisma_schema_option,
    target_from,
    yes_option,
)
from pgrunbook.cli.gate_options import Safety, backup_gate_options
from pgrunbook.errors import ConfigError, PgRunbookError
from pgrunbook.prisma.mode import detect, find_schema, has_migrations_table
from pgrunbook.profile import load_profile
from pgrunbook.target import Target

EXISTING_ROLES_SQL: Final = "SELECT rolname FROM pg_roles WHERE rolname = ANY(%(roles)s)"


def _known_steps(
    ctx: click.Context, param: click.Parameter, ids: tuple[str, ...]
) -> tuple[str, ...]:
    select(ids)  # an unknown step: one line (ConfigError, exit code 2) naming the steps
    return ids


def steps_argument(func: F) -> F:
    """``[STEP]...``, checked before anything connects; the help lists the step ids."""
    return click.argument("step_ids", metavar="[STEP]...", nargs=-1, callback=_known_steps)(func)


@contextmanager
def context(
    dsn: str | None,
    schema: str | None,
    profile_path: Path | None,
    options: StepOptions | None = None,
    *,
    purpose: str,
) -> Iterator[tuple[StepContext, Target]]:
    profile = load_profile(profile_path)
    target = target_from(dsn)
    with engine.open_context(
        target.session(purpose), profile, schema=schema, options=options
    ) as ctx:
        yield ctx, target


@click.command(short_help="Show what apply would change, and why.")
@steps_argument
@common_options
@click.option("--sql", "as_sql", is_flag=True, help="Print the SQL script instead of a table.")
@json_option
def plan(
    step_ids: tuple[str, ...],
    dsn: str | None,
    schema: str | None,
    profile_path: Path | None,
    as_sql: bool,
    as_json: bool,
) -> None:
    """Plan the runbook's changes for this database (read-only): what each step would
    create or change, the lock it takes, whether it runs in a transaction, its inverse, and
    what is already there, skipped or refused.

    STEP: indexes, triggers, audit, roles, constraints (default: all, in runbook order).
    """
    steps = select(step_ids)
    with context(dsn, schema, profile_path, purpose="planning changes") as (ctx, _):
        plans = engine.plan_steps(ctx, steps)
    if as_json:
        emit_json({"steps": [p.to_json() for p in plans]})
    elif as_sql:
        _print_sql(render.plan_sql(plans))
    else:
        out_console.print(render.plans(plans))


@click.command(short_help="Apply the runbook's changes online (scripts 02-06).")
@steps_argument
@common_options
@dry_run_option
@yes_option
@policy_options
@backup_gate_options
@click.option(
    "--add-not-valid",
    is_flag=True,
    help="constraints: add violated constraints NOT VALID anyway (new bad rows are refused "
    "at once; app updates of existing bad rows then fail).",
)
@click.option(
    "--audit-table",
    "audit_tables",
    multiple=True,
    metavar="TABLE",
    help="audit: put the row-change audit trigger on this table (repeatable; default: the "
    "profile's list).",
)
@click.option(
    "--passwords-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="roles: write the generated passwords and DATABASE_URL lines here (mode 0600).",
)
@click.option("--show-passwords", is_flag=True, help="roles: print the generated passwords.")
@click.option(
    "--long-transaction",
    "long_transaction_seconds",
    type=click.FloatRange(min=0),
    default=StepOptions.long_transaction_seconds,
    show_default=True,
    metavar="SECONDS",
    help="indexes: report transactions open longer than this (a build waits for them).",
)
@json_option
def apply(
    step_ids: tuple[str, ...],
    dsn: str | None,
    schema: str | None,
    profile_path: Path | None,
    dry_run: bool,
    yes: bool,
    lock_timeout_ms: int,
    budget_seconds: float,
    add_not_valid: bool,
    audit_tables: tuple[str, ...],
    passwords_file: Path | None,
    show_passwords: bool,
    long_transaction_seconds: float,
    as_json: bool,
    safety: Safety,
) -> None:
    """Apply the runbook's changes online, in runbook order, journaled and reversible.

    Each statement that takes a lock first waits while another session holds a conflicting
    one (it says who), then asks with a short lock timeout and retries with backoff, so the
    app never waits behind pgrunbook for longer than --lock-timeout. Indexes are built
    CONCURRENTLY. Exit code 1 when something was refused (e.g. constraints the data
    violates: see 'pgrunbook fix constraints').

    STEP: indexes, triggers, audit, roles, constraints (default: all, in runbook order).
    """
    steps = select(step_ids)
    options = StepOptions(
        add_not_valid=add_not_valid,
        audit_tables=audit_tables or None,
        passwords_file=passwords_file,
        long_transaction_seconds=long_transaction_seconds,
    )
    policy = ApplyPolicy(lock_timeout_ms=lock_timeout_ms, budget_seconds=budget_seconds)
    with context(dsn, schema, profile_path, options, purpose="applying changes") as (ctx, tgt):
        preview = engine.plan_steps(ctx, steps)
        creates_roles = any(p.secrets for p in preview)
        if not dry_run:
            if creates_roles and passwords_file is None and not show_passwords:
                raise ConfigError(
                    "the roles step creates login roles with generated passwords",
                    "pass --passwords-file FILE (written with mode 0600) or --show-passwords "
                    "so you can use them",
                )
            if creates_roles and passwords_file is not None:
                _check_writable(passwords_file)
            changes = sum(len(p.operations) for p in preview)
            if changes and not confirm(
                f"apply {changes} change(s) to {ctx.server.database.name}?", yes
            ):
                raise click.exceptions.Exit(1)
            if changes:
                safety.check(ctx.conn, tgt)
        passwords = Passwords(ctx, tgt, None if dry_run else passwords_file)
        try:
            with BuildBars(ctx, enabled=not as_json) as bars:
                report = engine.apply_steps(
                    ctx,
                    steps,
                    dry_run=dry_run,
                    policy=policy,
                    report=_reporter(bars, quiet=as_json),
                    on_plan=lambda plan: _before_step(plan, passwords, quiet=as_json),
                )
        except PgRunbookError:
            # roles made before the failure keep the passwords the file (or screen) shows
            kept = passwords.hand_over(passwords.existing())
            if show_passwords and kept:
                _print_passwords(kept, as_json)
            raise
        kept = passwords.hand_over(report.created_roles())
        if not dry_run and report.changed:
            _prisma_hint(ctx, "write these changes as Prisma migrations and schema.prisma edits")
    if as_json:
        document = report.to_json()
        if show_passwords and kept:
            document["passwords"] = kept
        emit_json(document)
    else:
        if report.dry_run:
            _print_sql(render.plan_sql([run.plan for run in report.runs]))
        out_console.print(render.apply_report(report))
        if show_passwords and kept:
            out_console.print(render.passwords(kept))
    if report.exit_code:
        raise click.exceptions.Exit(report.exit_code)


def _print_sql(text: str) -> None:
    out_console.print(text, markup=False, highlight=False, soft_wrap=True)


def _check_writable(path: Path) -> None:
    """Refuse before changing anything when the passwords could not be written."""
    if path.is_dir() or not path.parent.is_dir() or not os.access(path.parent, os.W_OK):
        raise ConfigError(
            f"cannot write the passwords file {path}", "choose a file in a writable directory"
        )
    if path.exists() and not os.access(path, os.W_OK):
        raise ConfigError(f"the passwords file {path} is not writable", "choose another file")


def _print_passwords(kept: dict[str, str], as_json: bool) -> None:
    if as_json:
        emit_json({"passwords": kept})
    else:
        out_console.print(render.passwords(kept))


class Passwords:
    """The roles step's generated passwords, written to the passwords file BEFORE the roles
    are created (a run that fails later must not leave login roles nobody knows the password
    of), then rewritten with the roles that were actually created."""

    def __init__(self, ctx: StepContext, target: Target, path: Path | None) -> None:
        self.ctx, self.target, self.path = ctx, target, path
        self.secrets: dict[str, str] = {}

    def planned(self, plan: StepPlan) -> None:
        if not plan.secrets:
            return
        self.secrets.update(plan.secrets)
        if self.path is not None:
            self._write(self.secrets)

    def existing(self) -> set[str]:
        """Which of the roles with a generated password exist now (after a failure)."""
        if not self.secrets:
            return set()
        try:
            rows = self.ctx.conn.execute(
                EXISTING_ROLES_SQL, {"roles": list(self.secrets)}
            ).fetchall()
        except psycopg.Error:
            return set(self.secrets)  # the session is gone: keep every password
        return {str(r[0]) for r in rows}

    def hand_over(self, created: set[str]) -> dict[str, str]:
        """The passwords of ``created``; the file rewritten to hold just those."""
        kept = {role: pw for role, pw in self.secrets.items() if role in created}
        if self.path is not None and kept:
            self._write(kept)
            err_console.print(
                f"wrote the passwords of {', '.join(sorted(kept))} to {self.path} "
                "(mode 0600); point the app's DATABASE_URL at app_user"
            )
        return kept

    def _write(self, passwords: dict[str, str]) -> None:
        from pgrunbook.change.steps.roles import write_env_file

        assert self.path is not None
        try:
            write_env_file(self.path, self.target.app, passwords, self.ctx.profile.roles)
        except OSError as exc:
            raise ConfigError(
                f"cannot write the passwords file {self.path}: {exc.strerror or exc}",
                "choose a file in a writable directory",
            ) from None


def _prisma_inverse(ctx: StepContext, explicit: Path | None) -> list[Path]:
    """After a rollback in Prisma mode: when pgrunbook's migrations hold what was undone,
    write the inverse migrations and take the schema.prisma edits out (prisma sync)."""
    from pgrunbook.prisma.migrations import read_recorded
    from pgrunbook.prisma.mode import find_project
    from pgrunbook.prisma.sync import plan_sync

    project = find_project(Path.cwd(), explicit)
    if project is None:
        _prisma_hint(
            ctx, "write the inverse migrations and take the schema.prisma edits out", explicit
        )
        return []
    folder = project.migrations_dir
    if not folder.is_dir() or not read_recorded(folder):
        return []  # pgrunbook never wrote migrations here: nothing to invert
    written = plan_sync(ctx, project.schema, folder).write()
    for item in written:
        err_console.print(f"prisma: wrote {item}")
    return written


def _prisma_hint(ctx: StepContext, what: str, explicit: Path | None = None) -> None:
    """In a Prisma project, changes made outside its migrations are drift until synced."""
    try:
        prisma = has_migrations_table(ctx.conn, ctx.schema) or find_schema(Path.cwd(), explicit)[0]
    except PgRunbookError:  # a broken package.json: the change is done, say nothing more
        return
    if prisma:
        err_console.print(f"note: Prisma mode is on: run 'pgrunbook prisma sync' to {what}")


def _before_step(plan: StepPlan, passwords: Passwords, *, quiet: bool) -> None:
    """Said before a step runs: what to watch (e.g. the long transactions a build waits for)."""
    passwords.planned(plan)
    if not quiet:
        for warning in plan.warnings:
            err_console.print(f"[yellow]warning[/] {escape(plan.step)}: {escape(warning)}")


def _reporter(bars: BuildBars, *, quiet: bool) -> Callable[[Event, Operation, str], None]:
    def report(event: Event, op: Operation, text: str) -> None:
        if event == "running" and op.concurrent:
            bars.start(op)
        if event == "done":
            bars.stop()
        if quiet:
            return
        if event == "waiting":
            err_console.print(f"[yellow]waiting[/] {escape(op.object)}: {escape(text)}")
        elif event == "retrying":
            err_console.print(f"[yellow]retrying[/] {escape(op.object)}: {escape(text)}")
        elif event == "done":
            err_console.print(f"[green]done[/] {escape(op.object)} ({escape(text)})")

    return report


@click.command(short_help="Check the runbook's verification checklist (section 5).")
@steps_argument
@common_options
@click.option(
    "--passwords-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="roles: log in as each role with the passwords apply wrote here.",
)
@json_option
def verify(
    step_ids: tuple[str, ...],
    dsn: str | None,
    schema: str | None,
    profile_path: Path | None,
    passwords_file: Path | None,
    as_json: bool,
) -> None:
    """Verify the applied steps: indexes valid and used, triggers fire, constraints
    validated, roles allowed and refused what they should be, the audit log writes.
    Changes nothing (test writes are rolled back). Exit code 1 when a check fails.

    STEP: indexes, triggers, audit, roles, constraints (default: all, in runbook order).
    """
    steps = select(step_ids)
    options = StepOptions(passwords_file=passwords_file)
    with context(dsn, schema, profile_path, options, purpose="verifying") as (ctx, _):
        checks = engine.verify_steps(ctx, steps)
    passed = all(c.passed for c in checks)
    if as_json:
        emit_json({"checks": [c.to_json() for c in checks], "passed": passed})
    else:
        out_console.print(render.verifications(checks))
    if not passed:
        raise click.exceptions.Exit(1)


@click.command(short_help="Undo what pgrunbook applied (section 6), newest first.")
@steps_argument
@common_options
@dry_run_option
@yes_option
@policy_options
@prisma_schema_option
@click.option(
    "--no-prisma-sync",
    is_flag=True,
    help="In Prisma mode, do not write the inverse migrations (run 'pgrunbook prisma sync' later).",
)
@json_option
def rollback(
    step_ids: tuple[str, ...],
    dsn: str | None,
    schema: str | None,
    profile_path: Path | None,
    dry_run: bool,
    yes: bool,
    lock_timeout_ms: int,
    budget_seconds: float,
    prisma_schema: Path | None,
    no_prisma_sync: bool,
    as_json: bool,
) -> None:
    """Roll back the steps, in reverse order, with the inverse SQL recorded in the journal
    when each change was applied. Only what pgrunbook created is removed, never an object
    that existed before it. Indexes are dropped CONCURRENTLY. In Prisma mode, when
    'pgrunbook prisma sync' wrote migrations for these changes, rollback writes the inverse
    migrations and takes the schema.prisma edits out (never touching existing migrations).

    STEP: indexes, triggers, audit, roles, constraints (default: all, in runbook order).
    """
    steps = select(step_ids)
    policy = ApplyPolicy(lock_timeout_ms=lock_timeout_ms, budget_seconds=budget_seconds)
    with context(dsn, schema, profile_path, purpose="rolling back") as (ctx, _):
        pending = engine.rollback_plan(ctx, steps)
        if (
            pending
            and not dry_run
            and not confirm(f"undo {len(pending)} change(s) in {ctx.server.database.name}?", yes)
        ):
            raise click.exceptions.Exit(1)
        with BuildBars(ctx, enabled=False) as bars:
            result = engine.rollback_steps(
                ctx, steps, dry_run=dry_run, policy=policy, report=_reporter(bars, quiet=as_json)
            )
        written: list[Path] = []
        if not dry_run and result.results:
            if no_prisma_sync:
                _prisma_hint(
                    ctx, "write the inverse migrations and take the edits out", prisma_schema
                )
            else:
                written = _prisma_inverse(ctx, prisma_schema)
    if as_json:
        emit_json({**result.to_json(), "prisma_written": [str(p) for p in written]})
    else:
        if result.dry_run and result.operations:
            _print_sql(render.rollback_sql(result.operations))
        out_console.print(render.rollback_report(result))


@click.command(short_help="Per step: pending, applied, partial or drifted.")
@steps_argument
@common_options
@prisma_schema_option
@json_option
def status(
    step_ids: tuple[str, ...],
    dsn: str | None,
    schema: str | None,
    profile_path: Path | None,
    prisma_schema: Path | None,
    as_json: bool,
) -> None:
    """Show each step's state: pending (nothing applied), applied, partial (some of it, or a
    run was interrupted), drifted (an object pgrunbook made was changed or dropped outside
    it), and whether Prisma mode is on, and why. Exit code 1 when a step has drifted.

    STEP: indexes, triggers, audit, roles, constraints (default: all, in runbook order).
    """
    steps = select(step_ids)
    with context(dsn, schema, profile_path, purpose="reading the journal") as (ctx, _):
        mode = detect(ctx.conn, ctx.schema, Path.cwd(), prisma_schema)
        states = engine.status(ctx, steps)
    if as_json:
        emit_json({"steps": [s.to_json() for s in states], "prisma": mode.to_json()})
    else:
        out_console.print(render.statuses(states))
        out_console.print(escape(prisma_line(mode, ctx.schema)), soft_wrap=True)
    if any(s.state == "drifted" for s in states):
        raise click.exceptions.Exit(1)
