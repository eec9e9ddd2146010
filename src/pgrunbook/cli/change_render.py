"""Renderers for the change commands: plans, apply and rollback reports, checks, states."""

from __future__ import annotations

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from pgrunbook.change.engine import ApplyReport, RollbackReport, StepStatus
from pgrunbook.change.operation import Operation
from pgrunbook.change.step import StepPlan, Verification

STATE_STYLE = {"applied": "green", "pending": "yellow", "partial": "yellow", "drifted": "red"}


def _operations(ops: list[Operation], title: str) -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False)
    table.add_column("object", no_wrap=True)
    table.add_column("lock")
    table.add_column("in a transaction", justify="center")
    table.add_column("why")
    for op in ops:
        table.add_row(op.object, op.lock, "yes" if op.transactional else "no", op.why)
    return table


def _plan_notes(plan: StepPlan) -> list[RenderableType]:
    parts: list[RenderableType] = []
    if plan.present:
        parts.append(Text(f"  already there: {len(plan.present)}", style="dim"))
    for skip in plan.skipped:
        parts.append(Text(f"  skipped {skip.object}: {skip.reason}", style="dim"))
    for refusal in plan.refused:
        parts.append(Text(f"  refused {refusal.object}: {refusal.reason}", style="red"))
        parts.append(Text(f"    fix: {refusal.fix}"))
    for warning in plan.warnings:
        parts.append(Text(f"  warning: {warning}", style="yellow"))
    return parts


def plans(plans: list[StepPlan]) -> RenderableType:
    parts: list[RenderableType] = []
    for plan in plans:
        if plan.operations:
            parts.append(_operations(plan.operations, f"{plan.step}: {len(plan.operations)}"))
        else:
            parts.append(Text(f"{plan.step}: nothing to change", style="green"))
        parts += _plan_notes(plan)
    total = sum(len(p.operations) for p in plans)
    parts.append(Text(f"{total} change(s) planned" if total else "Nothing to change."))
    return Group(*parts)


def _comment(text: str) -> list[str]:
    """``text`` as SQL comment lines (a line break never ends the comment)."""
    first, *rest = text.rstrip().splitlines() or [""]
    return [f"-- {first}", *(f"--   {line}" for line in rest)]


def _statement(op: Operation, title: str, inverse: str) -> list[str]:
    """One statement of a script, after comments: what, lock, transaction, its inverse."""
    where = "in its own transaction" if op.transactional else "outside a transaction"
    lines = _comment(f"{title} ({where}; lock: {op.lock})")
    if op.reverse_sql:
        lines += _comment(f"{inverse}: {op.reverse_sql}")
    return [*lines, op.sql.rstrip().rstrip(";") + ";", ""]


def plan_sql(plans: list[StepPlan]) -> str:
    """The plan as one SQL script: statements in order, each with its lock and inverse, and
    (as comments) what is refused and how to fix it."""
    lines = ["-- pgrunbook plan: the statements apply would run, in order", ""]
    for plan in plans:
        lines.append(f"-- step {plan.step}")
        if not plan.operations:
            lines.append("-- nothing to change")
        for op in plan.operations:
            lines += _statement(op, op.object, "undo")
        for refusal in plan.refused:
            lines += _comment(f"refused {refusal.object}: {refusal.reason}")
            lines += _comment(f"  fix: {refusal.fix}")
        for skip in plan.skipped:
            lines += _comment(f"skipped {skip.object}: {skip.reason}")
        for warning in plan.warnings:
            lines += _comment(f"warning: {warning}")
        lines.append("")
    return "\n".join(lines)


def rollback_sql(operations: list[Operation]) -> str:
    """What rollback would run: each applied operation's recorded inverse, newest first."""
    lines = ["-- pgrunbook rollback: the statements rollback would run, newest first", ""]
    for op in operations:
        lines += _statement(op.reverse(), f"undo {op.object}", "re-apply")
    return "\n".join(lines)


def apply_report(report: ApplyReport) -> RenderableType:
    """Per step what changed (or would: a dry run's SQL is printed before it, ``plan_sql``),
    what is refused and why, and the totals."""
    parts: list[RenderableType] = []
    verb = "would change" if report.dry_run else "changed"
    for run in report.runs:
        count = len(run.plan.operations) if report.dry_run else run.changed
        style = "green" if not run.plan.refused else "red"
        text = f"{run.plan.step}: {verb} {count}" if count else f"{run.plan.step}: no change"
        parts.append(Text(text, style=style))
        parts += _plan_notes(run.plan)
        for result in run.results:
            if result.skipped:
                parts.append(Text(f"  skipped {result.operation.object}: {result.skipped}"))
    if report.dry_run:
        total = sum(len(r.plan.operations) for r in report.runs)
        parts.append(Text(f"Dry run: {total} change(s) would be made; nothing was changed."))
    elif report.changed:
        parts.append(
            Text(
                f"Applied {report.changed} change(s) in {report.seconds:.1f} s. "
                "Undo with 'pgrunbook rollback'; check with 'pgrunbook verify'."
            )
        )
    else:
        parts.append(Text("Nothing to change: everything is already applied.", style="green"))
    if report.refused:
        parts.append(Text(f"{report.refused} object(s) refused: see above.", style="red"))
    return Group(*parts)


def passwords(kept: dict[str, str]) -> RenderableType:
    table = Table(title="Generated passwords (shown once)", box=box.SIMPLE_HEAD)
    table.add_column("role")
    table.add_column("password")
    for role, password in sorted(kept.items()):
        table.add_row(role, password)
    return table


def verifications(checks: list[Verification]) -> RenderableType:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False)
    table.add_column("step", no_wrap=True)
    table.add_column("check")
    table.add_column("result", no_wrap=True)
    for check in checks:
        result = Text("passed", style="green") if check.passed else Text("FAILED", style="red")
        table.add_row(check.step, check.name, result)
    failed = [c for c in checks if not c.passed]
    summary = (
        Text(f"All {len(checks)} checks passed.", style="green")
        if not failed
        else Text(f"{len(failed)} of {len(checks)} checks failed.", style="red")
    )
    parts: list[RenderableType] = [table, summary]
    for check in failed:
        parts.append(Text(f"  {check.step} / {check.name}: {check.details}", style="red"))
    return Group(*parts)


def rollback_report(report: RollbackReport) -> RenderableType:
    """The outcome (a dry run's statements are printed before it: ``rollback_sql``)."""
    if not report.operations:
        return Text("Nothing to roll back: pgrunbook has nothing applied for these steps.")
    if report.dry_run:
        return Text(
            f"Dry run: {len(report.operations)} change(s) would be undone; nothing was changed."
        )
    done = len([r for r in report.results if r.skipped is None])
    return Text(f"Rolled back {done} change(s).", style="green")


def statuses(states: list[StepStatus]) -> RenderableType:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False)
    for name in ("step", "state", "pending", "present", "journaled", "notes"):
        table.add_column(name)
    for s in states:
        notes = "; ".join(s.drifted + [f"interrupted: {o}" for o in s.interrupted])
        notes = notes or ("refused: " + ", ".join(s.refused) if s.refused else "")
        table.add_row(
            s.step,
            Text(s.state, style=STATE_STYLE[s.state]),
            str(len(s.pending)),
            str(s.present),
            str(s.applied_by_pgrunbook),
            notes,
        )
    return table
