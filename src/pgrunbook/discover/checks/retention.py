"""Rows past the profile's retention policies: the cleanup's backlog (runbook script 08).

The runbook deletes refresh tokens expired over 7 days ago (daily) and read notifications
older than 30 days (weekly). Rows past those ages are not a fault, but they are work the
cleanup has not done yet: this counts them, with the oldest and newest affected timestamps
and the SELECT and DELETE the cleanup would run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from psycopg import errors, sql

from pgrunbook.catalog import Column, Table
from pgrunbook.discover.check import Check, CheckResult
from pgrunbook.discover.checks.constraint_violations import profile_tables_found
from pgrunbook.discover.context import Context
from pgrunbook.findings import Finding, Severity
from pgrunbook.profile import RetentionPolicy
from pgrunbook.resolve import find_column, find_table
from pgrunbook.violations import CountLimits, Violations, column, count_violations, source

RANGE_SQL: Final = sql.SQL(
    "SELECT min({column}) AS oldest, max({column}) AS newest FROM {source} WHERE {predicate}"
)
DELETE_SQL: Final = sql.SQL("DELETE FROM {source} WHERE {predicate};")
CLEANUP_COMMAND: Final = "pgrunbook cleanup"


@dataclass(frozen=True)
class Thresholds:
    statement_timeout_ms: int = 10_000  # per policy (the count, then the oldest/newest)
    sample_above_bytes: int = 256 * 1024 * 1024  # larger tables are counted on a sample
    sample_percent: float = 1.0

    @property
    def limits(self) -> CountLimits:
        return CountLimits(
            statement_timeout_ms=self.statement_timeout_ms,
            sample_above_bytes=self.sample_above_bytes,
            sample_percent=self.sample_percent,
            max_samples=0,  # the ages say more than a few ids
        )


@dataclass(frozen=True)
class Range:
    oldest: datetime | None
    newest: datetime | None


def _range(ctx: Context, table: Table, name: str, predicate: sql.Composed, ms: int) -> Range:
    query = RANGE_SQL.format(column=column(name), source=source(table), predicate=predicate)
    try:
        with ctx.bounded(ms):
            return ctx.rows(Range, query)[0]
    except (errors.QueryCanceled, errors.LockNotAvailable):
        return Range(None, None)


def _describe(policy: RetentionPolicy, table: Table, col: Column) -> str:
    """``createdAt more than 30 days ago where isRead``, in the table's own column names."""
    extra = ""
    if policy.where is not None:
        names = {}
        for name in policy.where.names():
            found = find_column(table, name)
            names[name] = found.name if found else name
        extra = f" where {policy.where.template.format_map(names)}"
    return f"{col.name} more than {policy.older_than_days} days ago{extra}"


def _finding(
    ctx: Context,
    policy: RetentionPolicy,
    table: Table,
    col: Column,
    predicate: sql.Composed,
    found: Violations,
    span: Range,
) -> Finding:
    details = {
        "policy": policy.name,
        "table": table.qualified,
        "column": col.name,
        "older_than_days": policy.older_than_days,
        "cadence": policy.cadence,
        "count": found.count,
        "sampled": found.sampled,
        "sample_percent": found.sample_percent,
        "timed_out": found.timed_out,
        "oldest": span.oldest,
        "newest": span.newest,
        "select": found.query,
        "delete": DELETE_SQL.format(source=source(table), predicate=predicate).as_string(ctx.conn),
    }
    rule = _describe(policy, table, col)
    if found.count is None:
        message = f"{found.describe(f'rows past the {policy.name} policy')} ({rule})"
    else:
        message = (
            f"{found.describe('rows')} past the {policy.name} policy ({rule}), "
            f"waiting for the {policy.cadence} cleanup"
        )
        if span.oldest is not None and span.newest is not None:
            message += f"; {col.name} from {span.oldest:%Y-%m-%d} to {span.newest:%Y-%m-%d}"
    return Finding(
        check=CHECK.id,
        severity=Severity.INFO,
        object=table.qualified,
        message=message,
        details=details,
        fix=CLEANUP_COMMAND if found.count is not None else None,
    )


def _skipped(policy: RetentionPolicy, where: str, why: str) -> Finding:
    return Finding(
        check=CHECK.id,
        severity=Severity.INFO,
        object=where,
        message=f"skipped {policy.name}: {why}",
        details={"policy": policy.name, "table": policy.table},
    )


def run(ctx: Context, limits: Thresholds) -> CheckResult:
    findings: list[Finding] = []
    facts = []
    if not profile_tables_found(ctx):
        return CheckResult(findings)
    for policy in ctx.profile.retention:
        table = find_table(ctx.catalog, policy.table)
        if table is None:
            where = f"{ctx.schema}.{policy.table}"
            why = f"table {policy.table!r} not found in {ctx.schema}"
            findings.append(_skipped(policy, where, why))
            continue
        predicate = policy.render(table)
        if isinstance(predicate, str):
            findings.append(_skipped(policy, table.qualified, predicate))
            continue
        found = count_violations(ctx.conn, table, predicate, limits.limits)
        facts.append({"policy": policy.name, "table": table.qualified, "count": found.count})
        if not found.found and not found.timed_out:
            continue
        col = find_column(table, policy.column)
        assert col is not None  # render() found it
        span = (
            _range(ctx, table, col.name, predicate, limits.statement_timeout_ms)
            if found.found
            else Range(None, None)
        )
        findings.append(_finding(ctx, policy, table, col, predicate, found, span))
    return CheckResult(findings, facts)


CHECK = Check(
    id="retention",
    title="Rows past the retention policies (cleanup backlog)",
    run=run,
    thresholds=Thresholds(),
)
