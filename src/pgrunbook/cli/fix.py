"""``pgrunbook fix constraints``: repair the rows that violate the runbook's constraints."""

from __future__ import annotations

from pathlib import Path

import click
from rich import box
from rich.table import Table
from rich.text import Text

from pgrunbook.change import engine
from pgrunbook.change.runner import ApplyPolicy
from pgrunbook.change.steps import constraints as constraints_step
from pgrunbook.change.steps.constraints.fix import FixResult, fix_constraints
from pgrunbook.cli import change_render as render
from pgrunbook.cli.change import context
from pgrunbook.cli.common import (
    common_options,
    confirm,
    dry_run_option,
    emit_json,
    json_option,
    out_console,
    policy_options,
    yes_option,
)
from pgrunbook.cli.gate_options import Safety, backup_gate_options


@click.group(short_help="Repair data so the runbook's changes can be applied.")
def fix() -> None:
    """Data repairs, each with a dry run, recorded in the audit log."""


@fix.command(name="constraints", short_help="Fix rows that violate the CHECK constraints.")
@click.argument("names", metavar="[CONSTRAINT]...", nargs=-1)
@common_options
@dry_run_option
@yes_option
@policy_options
@backup_gate_options
@json_option
def constraints(
    names: tuple[str, ...],
    dsn: str | None,
    schema: str | None,
    profile_path: Path | None,
    dry_run: bool,
    yes: bool,
    lock_timeout_ms: int,
    budget_seconds: float,
    safety: Safety,
    as_json: bool,
) -> None:
    """Apply each violated constraint's documented fix (set a value, or delete the rows; see
    the profile's fix_set / fix_delete), one short transaction per constraint, old rows
    recorded in the audit log; then add and validate the constraints. Constraints without an
    automatic fix are reported, not touched. Needs --yes (or a terminal to confirm)."""
    with context(dsn, schema, profile_path, purpose="fixing data") as (ctx, target):
        preview = fix_constraints(ctx, names, dry_run=True)
        report: engine.ApplyReport | None = None
        rows = sum(would_change(r) for r in preview)
        if dry_run:
            results = preview
        else:
            [plan] = engine.plan_steps(ctx, [constraints_step.STEP])
            if (rows or plan.operations or plan.refused) and not confirm(
                f"change {rows} row(s) and add the constraints?", yes
            ):
                raise click.exceptions.Exit(1)
            if rows or plan.operations:
                safety.check(ctx.conn, target)
            policy = ApplyPolicy(lock_timeout_ms=lock_timeout_ms, budget_seconds=budget_seconds)
            results, report = engine.fix_and_apply_constraints(ctx, names, policy=policy)
    if as_json:
        emit_json(
            {
                "dry_run": dry_run,
                "fixes": [r.to_json() for r in results],
                "apply": report.to_json() if report else None,
            }
        )
    else:
        if dry_run:
            _print_sql(results)
        out_console.print(_table(results, dry_run))
        for r in results:
            if r.skipped and r.violations:
                out_console.print(Text(f"  {r.constraint}: {r.skipped}", style="yellow"))
        if report is not None:
            out_console.print(render.apply_report(report))
        elif dry_run:
            out_console.print(f"Dry run: {rows} row(s) would be changed; nothing was changed.")
    if report is not None and report.exit_code:
        raise click.exceptions.Exit(report.exit_code)


def would_change(result: FixResult) -> int:
    """Rows the fix changes (a dry run counts the violating rows it would change)."""
    if not result.dry_run:
        return result.rows_changed
    return (result.violations or 0) if result.sql and result.skipped is None else 0


def _print_sql(results: list[FixResult]) -> None:
    lines = ["-- pgrunbook fix constraints: the statements it would run, one transaction each"]
    for r in results:
        if r.sql and r.skipped is None:
            lines += ["", f"-- {r.constraint}: {r.violations} row(s), {r.note}", "BEGIN;"]
            lines += [statement.rstrip().rstrip(";") + ";" for statement in r.sql]
            lines.append("COMMIT;")
    out_console.print("\n".join(lines), markup=False, highlight=False, soft_wrap=True)


def _table(results: list[FixResult], dry_run: bool) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False)
    for name in ("constraint", "table", "strategy", "would change" if dry_run else "changed"):
        table.add_column(name)
    for r in results:
        table.add_row(r.constraint, r.table, r.strategy, str(would_change(r)))
    return table
