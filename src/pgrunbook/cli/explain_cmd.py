"""``pgrunbook explain``: the critical queries against their indexes (runbook script 10)."""

from __future__ import annotations

from pathlib import Path

import click
from rich import box
from rich.markup import escape
from rich.table import Table

from pgrunbook.change import engine
from pgrunbook.cli.common import (
    common_options,
    emit_json,
    err_console,
    json_option,
    out_console,
    target_from,
)
from pgrunbook.errors import ConfigError
from pgrunbook.explain import (
    DEFAULT_RUNS,
    Baseline,
    ExplainReport,
    QueryComparison,
    check_overrides,
    compare,
    explain_queries,
    read_baseline,
    select_queries,
    write_baseline,
)
from pgrunbook.explain.run import SMALL_TABLE
from pgrunbook.explainplan import plan_tree, shape
from pgrunbook.profile import load_profile


def _params(ctx: click.Context, param: click.Parameter, items: tuple[str, ...]) -> dict[str, str]:
    """``--param name=value`` pairs (a malformed one: one line, exit code 2)."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--param {item!r} is not name=value", "e.g. --param room_id=<uuid>")
        out[name.strip()] = value
    return out


def _results_table(report: ExplainReport) -> Table:
    table = Table(
        title=f"EXPLAIN ANALYZE of the critical queries ({report.database}, median of "
        f"{report.runs} run{'s' if report.runs != 1 else ''})",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    table.add_column("query", overflow="fold", min_width=12)
    table.add_column("variant", no_wrap=True)
    table.add_column("expected index", overflow="fold", min_width=16)
    table.add_column("index", overflow="fold", min_width=8, max_width=24)
    # the expected index is not named again in the plan: "Index Scan" means through it
    table.add_column("plan", overflow="fold", min_width=12)
    for name in ("rows", "ms", "plan ms", "hit/read"):
        table.add_column(name, justify="right", no_wrap=True)
    for r in report.results:
        s = r.summary
        colour = "green" if r.passed else "red" if r.failed else "yellow"
        verdict = f"[{colour}]{escape(r.verdict)}[/]"
        table.add_row(
            r.name,
            r.variant,
            r.expected_index,
            verdict,
            escape(shape(s).replace(f" using {r.expected_index}", "")),
            f"{s.rows:,.0f}",
            f"{s.execution_ms:,.3f}",
            f"{s.planning_ms:,.3f}",
            f"{s.shared_hit:,}/{s.shared_read:,}",
        )
    return table


def _params_table(report: ExplainReport) -> Table:
    table = Table(title="parameters", box=box.SIMPLE_HEAD)
    for name in ("query", "variant", "parameter", "value", "from"):
        table.add_column(name, overflow="fold")
    for r in report.results:
        for key, value in r.binding.values.items():
            table.add_row(r.name, r.variant, key, escape(str(value)), escape(r.binding.notes[key]))
    return table


def _compare_table(baseline: Baseline, rows: list[QueryComparison]) -> Table:
    table = Table(
        title=f"before ({baseline.path}, {baseline.taken_at}) and after (now)",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("query", no_wrap=True)
    table.add_column("variant", no_wrap=True)
    for name in ("before ms", "after ms", "speedup"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("plan before -> after", overflow="fold")
    for row in rows:
        b, a = row.before.summary, row.after.summary
        plan = f"{shape(b)} -> {shape(a)}" if row.plan_changed else f"unchanged: {shape(a)}"
        table.add_row(
            row.after.name,
            row.after.variant,
            f"{b.execution_ms:,.3f}",
            f"{a.execution_ms:,.3f}",
            f"{row.comparison.speedup:,.1f}x",
            escape(plan),
        )
    return table


def _summary_line(report: ExplainReport) -> str:
    """``26 of 28 use their index; 1 on a small table ...; 1 do not use it although it exists``."""
    results = report.results
    passed = sum(1 for r in results if r.passed)
    line = f"{passed} of {len(results)} use their expected index"
    missing = sum(1 for r in results if r.verdict == "index missing")
    if missing:
        line += f"; {missing} without it because it does not exist yet (pgrunbook apply indexes)"
    small = sum(1 for r in results if r.verdict == SMALL_TABLE)
    if small:
        line += f"; {small} on a table small enough to read whole (the index pays off as it grows)"
    failed = sum(1 for r in results if r.failed)
    if failed:
        line += f"; {failed} do not use it although it exists"
    return line


@click.command(short_help="EXPLAIN ANALYZE the critical queries, against their indexes (10).")
@common_options
@click.option("--query", "names", multiple=True, metavar="NAME", help="Only this query (repeat).")
@click.option(
    "--runs",
    type=click.IntRange(min=1, max=100),
    default=DEFAULT_RUNS,
    show_default=True,
    help="Runs per query and variant; the median counts.",
)
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="NAME=VALUE",
    callback=_params,
    help="Use this value for the parameter (e.g. room_id=<uuid>) instead of sampling it.",
)
@click.option("--plan", "show_plan", is_flag=True, help="Print each plan tree.")
@click.option(
    "--baseline",
    "baseline_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Save the results to FILE (to --compare with later).",
)
@click.option(
    "--compare",
    "compare_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Compare with the results saved in FILE (same parameter values), per query.",
)
@click.option(
    "--fail-on-missing-index",
    is_flag=True,
    help="Exit 1 also when an expected index does not exist (default: only when it exists "
    "and the query does not use it).",
)
@json_option
def explain(
    dsn: str | None,
    schema: str | None,
    profile_path: Path | None,
    names: tuple[str, ...],
    runs: int,
    params: dict[str, str],
    show_plan: bool,
    baseline_path: Path | None,
    compare_path: Path | None,
    fail_on_missing_index: bool,
    as_json: bool,
) -> None:
    """Run EXPLAIN (ANALYZE, BUFFERS) on the app's critical queries (the profile's
    [[queries]]: room history, gifts, wallets, follows, notifications, ...), each in a
    transaction that is rolled back, and report per query the plan, the index it uses
    against the one it should (pass/fail), buffers and the median time. Parameters are
    sampled from the data: the hot value (the busiest room, the power user) and a typical
    one (the median), each explained. Exit code 1 when a query does not use its index
    although the index exists (with --fail-on-missing-index also when it does not exist).
    """
    profile = load_profile(profile_path)
    if not profile.queries:
        raise ConfigError(
            f"the profile {profile.source} has no [[queries]] to explain",
            "copy the section from a fresh 'pgrunbook profile export FILE' (older exports lack it)",
        )
    specs = select_queries(profile.queries, names)
    check_overrides(specs, params)
    baseline = read_baseline(compare_path) if compare_path is not None else None
    if baseline_path is not None and not baseline_path.parent.is_dir():
        raise ConfigError(
            f"cannot write the baseline {baseline_path}: its folder does not exist",
            "choose another path",
        )
    target = target_from(dsn)
    session = target.session("explaining queries")
    with (
        engine.open_context(session, profile, schema=schema) as ctx,
        err_console.status("explaining the critical queries") as status,
    ):
        report = explain_queries(
            ctx.conn,
            ctx.schema,
            specs,
            runs=runs,
            overrides=params,
            pinned=baseline.pinned() if baseline else None,
            on_query=lambda name, variant: status.update(f"explaining {name} ({variant})"),
        )
    if baseline_path is not None:
        write_baseline(baseline_path, report)
    comparisons = compare(baseline, report) if baseline else []
    for skip in report.skipped:
        err_console.print(f"[yellow]skipped[/] {skip.object}: {escape(skip.reason)}")
    if baseline is not None:
        if baseline.database != report.database:
            err_console.print(
                f"[yellow]note:[/] the baseline is of database {baseline.database!r}, "
                f"this run of {report.database!r}"
            )
        unmatched = [f"{r.name} ({r.variant})" for r in report.results
                     if (r.name, r.variant) not in baseline.entries]  # fmt: skip
        if unmatched:
            err_console.print(f"[yellow]not in the baseline:[/] {', '.join(unmatched)}")
    failures = report.failures(missing=fail_on_missing_index)
    if as_json:
        document = report.to_json()
        if baseline is not None:
            document["baseline"] = {
                "path": str(baseline.path),
                "database": baseline.database,
                "taken_at": baseline.taken_at,
            }
            document["comparison"] = [c.to_json() for c in comparisons]
        document["passed"] = not failures
        emit_json(document)
    else:
        out_console.print(_results_table(report))
        if any(r.binding.values for r in report.results):
            out_console.print(_params_table(report))
        if show_plan:
            for r in report.results:
                out_console.print(f"{r.name} ({r.variant}): {r.summary.query}", markup=False)
                tree = plan_tree(r.summary.plan) if r.summary.plan else []
                out_console.print("\n".join(tree) + "\n", markup=False, soft_wrap=True)
        if baseline is not None:
            out_console.print(_compare_table(baseline, comparisons))
        out_console.print(_summary_line(report), markup=False)
        if baseline_path is not None:
            err_console.print(f"saved the results to {baseline_path} (use it with --compare)")
    if failures:
        raise click.exceptions.Exit(1)
