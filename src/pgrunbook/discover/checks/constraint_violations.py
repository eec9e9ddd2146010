"""Rows that violate a CHECK constraint: one left NOT VALID, or one the profile plans to add.

A constraint added ``NOT VALID`` checks only new and updated rows; ``VALIDATE CONSTRAINT``
fails while old rows break it (runbook section 7, "Constraint Validation Fails"). Worse,
once such a constraint exists, any UPDATE of a violating row that does not fix it fails,
even one that only sets ``updatedAt``. So this counts, for each NOT VALID CHECK constraint
and for each of the profile's constraints (runbook script 06) not yet on its table, the
rows that would break it: the expression is FALSE (NULL passes, as in a CHECK constraint).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from psycopg import sql

from pgrunbook.catalog import Table
from pgrunbook.discover.check import Check, CheckResult
from pgrunbook.discover.context import Context
from pgrunbook.findings import Finding, Severity
from pgrunbook.profile import ConstraintSpec
from pgrunbook.resolve import find_table
from pgrunbook.violations import CountLimits, Violations, count_violations

State = Literal["not_valid", "planned"]

NOT_VALID_CHECKS_SQL: Final = """
SELECT con.conrelid::int8 AS table_oid, con.conname AS name,
       pg_get_expr(con.conbin, con.conrelid) AS expression
  FROM pg_constraint con
  JOIN pg_class c ON c.oid = con.conrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = %(schema)s AND con.contype = 'c' AND NOT con.convalidated
 ORDER BY c.relname, con.conname
"""

VIOLATION_SQL: Final = sql.SQL("NOT ({check})")
VALIDATE_SQL: Final = sql.SQL("ALTER TABLE {table} VALIDATE CONSTRAINT {name};")


@dataclass(frozen=True)
class Thresholds(CountLimits):
    """The cost limits of each constraint's count: statement timeout, sampling, sample ids."""


@dataclass(frozen=True)
class NotValidCheck:
    table_oid: int
    name: str
    expression: str  # pg_get_expr of conbin: the server's own rendering


def profile_tables_found(ctx: Context) -> bool:
    """Whether any table the profile names exists here (if none, it is another app)."""
    names = {c.table for c in ctx.profile.constraints} | {r.table for r in ctx.profile.retention}
    return any(find_table(ctx.catalog, name) is not None for name in names)


@dataclass(frozen=True)
class Counted:
    """One constraint's violating rows (also when there are none: the report's facts)."""

    table: Table
    name: str
    check: sql.Composable
    state: State
    found: Violations

    def fact(self) -> dict[str, object]:
        return {
            "constraint": self.name,
            "table": self.table.qualified,
            "state": self.state,
            "count": self.found.count,
            "sampled": self.found.sampled,
        }


def _finding(ctx: Context, counted: Counted) -> Finding | None:
    table, name, found = counted.table, counted.name, counted.found
    check_text = counted.check.as_string(ctx.conn)
    details = {
        "constraint": name,
        "table": table.qualified,
        "check": check_text,
        "state": counted.state,
        **found.to_json(),
    }
    if found.count is None:
        return Finding(
            check=CHECK.id,
            severity=Severity.INFO,
            object=table.qualified,
            message=f"{found.describe(f'rows violating {name}')}; run details.query at a "
            "quiet time",
            details=details,
        )
    if not found.found:
        return None
    violate = f"{found.describe('rows')} violate {name}"
    if counted.state == "not_valid":
        target = sql.Identifier(table.schema, table.name)
        return Finding(
            check=CHECK.id,
            severity=Severity.WARNING,
            object=table.qualified,
            message=f"{violate}: the constraint is NOT VALID, so validating it fails, and any "
            "UPDATE of one of these rows fails unless it fixes the row; fix the rows "
            "(details.query lists them), then validate",
            details=details,
            fix=VALIDATE_SQL.format(table=target, name=sql.Identifier(name)).as_string(ctx.conn),
        )
    return Finding(
        check=CHECK.id,
        severity=Severity.WARNING,
        object=table.qualified,
        message=f"{violate}: once this constraint exists, even NOT VALID, any UPDATE of one of "
        "these rows fails unless it fixes the row; fix the rows (details.query lists them) "
        "before adding it",
        details=details,
    )


def _count(
    ctx: Context, table: Table, name: str, check: sql.Composable, state: State, limits: Thresholds
) -> Counted:
    predicate = VIOLATION_SQL.format(check=check)
    return Counted(table, name, check, state, count_violations(ctx.conn, table, predicate, limits))


def _not_valid(ctx: Context, limits: Thresholds) -> list[Counted]:
    unvalidated = [
        c for t in ctx.catalog for c in t.constraints if c.type == "c" and not c.validated
    ]
    if not unvalidated:
        return []
    out = []
    for con in ctx.rows(NotValidCheck, NOT_VALID_CHECKS_SQL, {"schema": ctx.schema}):
        table = ctx.catalog.by_oid.get(con.table_oid)
        if table is not None:
            out.append(_count(ctx, table, con.name, sql.SQL(con.expression), "not_valid", limits))
    return out


def _skipped(spec: ConstraintSpec, where: str, why: str) -> Finding:
    return Finding(
        check=CHECK.id,
        severity=Severity.INFO,
        object=where,
        message=f"skipped {spec.name}: {why}",
        details={"constraint": spec.name, "table": spec.table, "state": "planned"},
    )


def _planned(ctx: Context, limits: Thresholds) -> tuple[list[Counted], list[Finding]]:
    """The profile's constraints not yet on their table, counted; and the ones skipped."""
    counted: list[Counted] = []
    skipped: list[Finding] = []
    if not profile_tables_found(ctx):
        return counted, skipped
    for spec in ctx.profile.constraints:
        table = find_table(ctx.catalog, spec.table)
        if table is None:
            where = f"{ctx.schema}.{spec.table}"
            skipped.append(_skipped(spec, where, f"table {spec.table!r} not found in {ctx.schema}"))
            continue
        if any(c.type == "c" and c.name == spec.name for c in table.constraints):
            continue  # validated: nothing to do; NOT VALID: counted as such
        check = spec.check.render(table)
        if isinstance(check, str):
            skipped.append(_skipped(spec, table.qualified, check))
            continue
        counted.append(_count(ctx, table, spec.name, check, "planned", limits))
    return counted, skipped


def run(ctx: Context, limits: Thresholds) -> CheckResult:
    planned, skipped = _planned(ctx, limits)
    counted = _not_valid(ctx, limits) + planned
    findings = [f for f in (_finding(ctx, c) for c in counted) if f is not None]
    return CheckResult(findings + skipped, [c.fact() for c in counted])


CHECK = Check(
    id="constraint_violations",
    title="Rows violating NOT VALID or planned CHECK constraints",
    run=run,
    thresholds=Thresholds(),
)
