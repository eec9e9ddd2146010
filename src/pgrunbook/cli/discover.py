"""``pgrunbook discover``: the runbook's script 01 (read-only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from pgrunbook.cli.common import (
    config_option,
    dsn_option,
    emit_json,
    err_console,
    json_option,
    out_console,
    plan_limit_option,
    prisma_line,
    prisma_schema_option,
    profile_option,
    schema_option,
    target_from,
)
from pgrunbook.config import load_config
from pgrunbook.discover import BY_ID, DiscoveryReport, discover
from pgrunbook.findings import Severity
from pgrunbook.prisma.mode import detect
from pgrunbook.profile import load_profile
from pgrunbook.report import units
from pgrunbook.report.findings_table import findings_table, not_run_lines, summary_line

TABLES_SHOWN = 12


@click.command(short_help="Find what is wrong (read-only): script 01.")
@dsn_option
@schema_option()
@config_option
@click.option(
    "--check",
    "only",
    multiple=True,
    metavar="ID",
    help=f"Run only this check (repeatable). Checks: {', '.join(BY_ID)}.",
)
@click.option("--skip", multiple=True, metavar="ID", help="Skip this check (repeatable).")
@click.option(
    "--fail-on",
    type=click.Choice(["warning", "critical"]),
    default=None,
    help="Exit 1 when a finding is at or above this severity (for CI).",
)
@plan_limit_option
@profile_option
@prisma_schema_option
@click.option("--verbose", "-v", is_flag=True, help="Show every info finding and every table.")
@json_option
def discover_cmd(
    dsn: str | None,
    schema: str | None,
    config_path: Path | None,
    only: tuple[str, ...],
    skip: tuple[str, ...],
    fail_on: str | None,
    plan_limit_mb: int | None,
    profile_path: Path | None,
    prisma_schema: Path | None,
    verbose: bool,
    as_json: bool,
) -> None:
    """Report what is wrong with the database, read-only (the runbook's script 01).

    Dead tuples, unused, duplicate, invalid and missing indexes, orphan rows, rows that break
    the runbook's constraints, the naming convention, and health: updatedAt triggers,
    sequences, wraparound, cache hit ratios, connections, size, bloat, slow queries. Each
    finding has a severity (info, warning, critical) and, where there is one, its fix.
    With a Prisma schema (--prisma-schema, or found as the Prisma CLI finds it) the relations
    it declares replace the ones inferred from column names, and with relationMode =
    "prisma" relation fields without an index in the schema are reported.
    Exit code 1 with --fail-on when a finding reaches that severity.
    """
    config = load_config(config_path)
    profile = load_profile(profile_path)
    target = target_from(dsn)
    cwd = Path.cwd()
    with err_console.status("discovering") as status:
        report = discover(
            target.reader(),
            schema=schema,
            config=config,
            only=only,
            skip=skip,
            plan_limit_bytes=plan_limit_mb * 1024 * 1024 if plan_limit_mb else None,
            profile=profile,
            on_check=lambda check: status.update(f"discover: {check.title}"),
            prisma=lambda conn, name: detect(conn, name, cwd, prisma_schema),
        )
    if as_json:
        emit_json(report.to_json())
    else:
        out_console.print(render(report, verbose=verbose))
    code = report.exit_code(Severity(fail_on) if fail_on else None)
    if code:
        raise click.exceptions.Exit(code)


def render(report: DiscoveryReport, *, verbose: bool = False) -> RenderableType:
    """The human report: header, table inventory, findings, skipped checks, summary."""
    age = units.duration(report.stats.age)
    header = Text.assemble(
        ("pgrunbook discover", "bold"),
        f": database {report.database}, schema {report.schema}, "
        f"PostgreSQL {report.server.version}; statistics collected for {age}",
    )
    parts: list[RenderableType] = [header]
    if report.prisma is not None:
        parts.append(Text(prisma_line(report.prisma, report.schema) + _declared(report)))
    tables = report.facts.get("tables")
    if tables:
        parts.append(_tables(tables, verbose))
    if report.findings:
        parts.append(findings_table(report.findings, verbose=verbose))
    else:
        parts.append(Text("No findings.", style="green"))
    parts += not_run_lines(report.checks)
    parts.append(
        Text(
            f"{summary_line(report.findings)} ({len(report.checks)} checks, {report.seconds:.1f} s)"
        )
    )
    return Group(*parts)


def _declared(report: DiscoveryReport) -> str:
    """How many of the schema's relations the database has, and which it lacks."""
    facts = report.facts.get("prisma")
    if not facts:
        return ""
    text = f"; {facts['declared_relations']} relations declared"
    unmatched = facts["unmatched"]
    if unmatched:
        text += ", not matching the database: " + "; ".join(
            f"{u['model']}.{u['field']} ({u['problem']})" for u in unmatched
        )
    return text


def _tables(rows: list[dict[str, Any]], verbose: bool) -> RenderableType:
    table = Table(title="Tables", title_justify="left", box=box.SIMPLE_HEAD, show_edge=False)
    table.add_column("table", no_wrap=True, min_width=12)
    for name in ("rows (est.)", "total", "heap", "indexes", "toast", "dead"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("last vacuum", no_wrap=True)
    table.add_column("last analyze", no_wrap=True)
    ordered = sorted(rows, key=lambda r: -int(r["total_bytes"]))
    for row in ordered if verbose else ordered[:TABLES_SHOWN]:
        table.add_row(
            row["name"],
            units.count(row["estimated_rows"]),
            units.size(row["total_bytes"]),
            units.size(row["table_bytes"]),
            units.size(row["index_bytes"]),
            units.size(row["toast_bytes"]),
            units.percent(row["dead_ratio"]),
            _ago(row.get("last_vacuum_age_seconds")),
            _ago(row.get("last_analyze_age_seconds")),
        )
    if not verbose and len(ordered) > TABLES_SHOWN:
        table.caption = f"{len(ordered) - TABLES_SHOWN} smaller tables not shown (--verbose)"
    return table


def _ago(seconds: float | None) -> str:
    return "never" if seconds is None else f"{units.duration(seconds)} ago"
