"""The run report as Markdown, readable in a GitHub issue or wiki page.

A title with the cadence, the database (its masked DSN: never a password) and the date,
then one section per task: the runbook line it implements, its status and summary, its
table, the SQL it ran (or would run) and its notes.
"""

from __future__ import annotations

from typing import Final

from pgrunbook.cadence.report import Grid, RunReport, TaskResult

STATUS_TEXT: Final = {
    "ran": "done",
    "dry_run": "dry run (nothing changed)",
    "failed": "**FAILED**",
    "interrupted": "**INTERRUPTED**",
    "not_run": "not run",
}


def _cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def grid_markdown(grid: Grid) -> list[str]:
    if not grid.rows:
        return ["_(none)_"]
    lines = [
        "| " + " | ".join(_cell(c) for c in grid.columns) + " |",
        "|" + "|".join("---" for _ in grid.columns) + "|",
    ]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in grid.rows]
    return lines


def task_markdown(task: TaskResult) -> list[str]:
    lines = [f"## {task.title}", "", f"> Runbook section 8, {task.runbook}", ""]
    lines.append(f"**Status:** {STATUS_TEXT[task.status]} ({task.seconds:.1f} s)")
    if task.error:
        lines += ["", f"**Error:** {task.error}"]
    if task.summary:
        lines += ["", task.summary]
    if task.grid is not None:
        lines += ["", *grid_markdown(task.grid)]
    if task.sql:
        lines += ["", "```sql", *(s.rstrip(";") + ";" for s in task.sql), "```"]
    if task.notes:
        lines += ["", *(f"- {_cell(n)}" for n in task.notes)]
    return [*lines, ""]


def render_markdown(report: RunReport) -> str:
    """The whole report as one Markdown document."""
    mode = " (dry run)" if report.dry_run else ""
    problems = report.problems
    outcome = (
        "all tasks done"
        if not problems
        else "problems: " + ", ".join(f"{t.title} {t.status}" for t in problems)
    )
    lines = [
        f"# pgrunbook run {report.cadence}{mode}: {report.database}",
        "",
        f"- Database: `{report.dsn}`, schema `{report.schema}`",
        f"- Date: {report.started_at.strftime('%Y-%m-%d %H:%M:%S %Z')}",
        f"- Result: {outcome} in {report.seconds:.1f} s",
        "- Size snapshot: "
        + ("recorded in pgrunbook.snapshots" if report.snapshot_recorded else "not recorded"),
        "",
    ]
    for task in report.tasks:
        lines += task_markdown(task)
    return "\n".join(lines).rstrip("\n") + "\n"
