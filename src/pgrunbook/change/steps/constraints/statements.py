"""The runbook's CHECK constraints (script 06) in this database: where each one goes, the
statements that add, validate and drop it, and the rows that break it.

``plan``, ``export`` and ``fix`` all build their SQL from ``Target``: one place that says
what ``chk_wallet_balance_non_negative`` is here (``"public"."Wallet"``, ``"balance" >= 0``
or ``"public"."wallets"``, ``"balance" >= 0``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from psycopg import sql

from pgrunbook.catalog import Constraint, Table
from pgrunbook.change.lockmodes import LockMode
from pgrunbook.change.operation import Operation
from pgrunbook.change.refs import ObjectRef, RefKind
from pgrunbook.change.step import Skip, StepContext
from pgrunbook.profile.model import ConstraintSpec
from pgrunbook.resolve import find_column
from pgrunbook.violations import CountLimits, Violations, count_violations

ID: Final = "constraints"

# Rows where the check is NULL pass, as they pass a CHECK constraint.
VIOLATION_SQL: Final = sql.SQL("NOT ({check})")
ADD_SQL: Final = sql.SQL("ALTER TABLE {table} ADD CONSTRAINT {name} CHECK ({check}) NOT VALID")
VALIDATE_SQL: Final = sql.SQL("ALTER TABLE {table} VALIDATE CONSTRAINT {name}")
DROP_SQL: Final = sql.SQL("ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {name}")
# the server's own rendering of a constraint's expression (what VALIDATE checks)
EXPRESSION_SQL: Final = (
    "SELECT pg_get_expr(conbin, conrelid) FROM pg_constraint WHERE oid = %(oid)s"
)

# The PostgreSQL docs (ALTER TABLE): "most forms of ADD table_constraint require an ACCESS
# EXCLUSIVE lock" (only ADD FOREIGN KEY takes less); VALIDATE CONSTRAINT takes SHARE UPDATE
# EXCLUSIVE, which lets reads and writes go on; DROP CONSTRAINT takes ACCESS EXCLUSIVE.
ADD_LOCK: Final = LockMode.ACCESS_EXCLUSIVE
VALIDATE_LOCK: Final = LockMode.SHARE_UPDATE_EXCLUSIVE
DROP_LOCK: Final = LockMode.ACCESS_EXCLUSIVE

CONSEQUENCE: Final = (
    "a NOT VALID constraint is still checked on every new row version, so once it exists "
    "any app UPDATE of a violating row fails, even one that only touches {updated}"
)
FIX_COMMAND: Final = "pgrunbook fix constraints --yes"
KIND_NAMES: Final = {"p": "primary key", "u": "unique", "x": "exclusion", "f": "foreign key",
                     "c": "check"}  # fmt: skip


@dataclass(frozen=True)
class Target:
    """One profile constraint resolved against this database's table and column names."""

    spec: ConstraintSpec
    table: Table
    check: sql.Composed  # the expression over the table's real column names

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def object(self) -> str:
        """``constraint public.Wallet.chk_wallet_balance_non_negative``"""
        return f"constraint {self.table.qualified}.{self.name}"

    @property
    def validate_object(self) -> str:
        return f"validate {self.table.qualified}.{self.name}"

    @property
    def check_text(self) -> str:
        return self.check.as_string()

    @property
    def violation(self) -> sql.Composed:
        return VIOLATION_SQL.format(check=self.check)

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef(RefKind.CONSTRAINT, self.name, self.table.schema, self.table.name)

    def _format(self, template: sql.SQL) -> str:
        return template.format(
            table=sql.Identifier(self.table.schema, self.table.name),
            name=sql.Identifier(self.name),
            check=self.check,
        ).as_string()

    def add_sql(self) -> str:
        return self._format(ADD_SQL)

    def validate_sql(self) -> str:
        return self._format(VALIDATE_SQL)

    def drop_sql(self) -> str:
        return self._format(DROP_SQL)

    def existing(self) -> Constraint | None:
        """The constraint of that name on the table, as the catalog snapshot has it."""
        return next((c for c in self.table.constraints if c.name == self.name), None)

    def updated_column(self) -> str:
        """How this table spells ``updatedAt`` (for the consequence sentence)."""
        column = find_column(self.table, "updatedAt")
        return column.name if column is not None else "updatedAt"

    def add_operation(self, why: str = "") -> Operation:
        return Operation(
            step=ID,
            object=self.object,
            sql=self.add_sql(),
            reverse_sql=self.drop_sql(),
            transactional=True,
            lock_mode=ADD_LOCK,
            table=(self.table.schema, self.table.name),
            why=why
            or f"CHECK ({self.check_text}), added NOT VALID: a brief ACCESS EXCLUSIVE lock, "
            "no scan of the existing rows",
            ref=self.ref,
            creates=True,
            reverse_lock_mode=DROP_LOCK,
        )

    def validate_operation(self, why: str = "") -> Operation:
        return Operation(
            step=ID,
            object=self.validate_object,
            sql=self.validate_sql(),
            reverse_sql=None,  # there is no un-validating; dropping is the add's inverse
            transactional=True,
            lock_mode=VALIDATE_LOCK,
            table=(self.table.schema, self.table.name),
            why=why
            or "checks the existing rows under SHARE UPDATE EXCLUSIVE: reads and writes go on",
            ref=self.ref,
        )


def resolve(ctx: StepContext, spec: ConstraintSpec) -> Target | Skip:
    """The constraint in this database's names, or why it cannot exist here."""
    table = ctx.table(spec.table)
    where = f"constraint {ctx.schema}.{spec.table}.{spec.name}"
    if table is None:
        return Skip(where, f"table {spec.table!r} not found in schema {ctx.schema}")
    check = spec.check.render(table)
    if isinstance(check, str):
        return Skip(f"constraint {table.qualified}.{spec.name}", check)
    return Target(spec, table, check)


def count(ctx: StepContext, target: Target, existing: Constraint | None = None) -> Violations:
    """The rows that break the constraint (the server's expression when it exists already).

    A count on a sample that finds nothing proves nothing, and a wrong "none" would let the
    plan add a constraint whose validation then fails (leaving every UPDATE of the missed
    rows failing): such a count is redone exactly, under the same time limit.
    """
    predicate: sql.Composable = target.violation
    if existing is not None:
        row = ctx.conn.execute(EXPRESSION_SQL, {"oid": existing.oid}).fetchone()
        if row is not None and row[0] is not None:
            predicate = VIOLATION_SQL.format(check=sql.SQL(str(row[0])))
    found = count_violations(ctx.conn, target.table, predicate)
    if found.sampled and found.count == 0:
        found = count_violations(ctx.conn, target.table, predicate, CountLimits(sample_percent=0))
    return found


def fix_hint(target: Target, found: Violations) -> str:
    """What resolves the violations: pgrunbook's fix, or the rows to fix by hand."""
    if target.spec.fix.strategy != "manual":
        return FIX_COMMAND
    return f"fix the rows by hand: {target.spec.fix.note or 'no automatic fix'}; {found.query}"


def details(target: Target, found: Violations) -> dict[str, Any]:
    return {
        "constraint": target.name,
        "table": target.table.qualified,
        "check": target.check_text,
        "strategy": target.spec.fix.strategy,
        "fix_note": target.spec.fix.note,
        **found.to_json(),
    }


def violations_reason(target: Target, found: Violations, *, exists: bool = False) -> str:
    """One sentence: how many rows, what that means, what adding it anyway would do."""
    consequence = CONSEQUENCE.format(updated=target.updated_column())
    if found.count is None:
        return (
            f"could not count in time the rows that violate {target.name} (the count stopped "
            f"after {found.timeout_ms / 1000:g} s), and {consequence}; count them at a quiet "
            f"time with: {found.query}"
        )
    samples = f" (e.g. {', '.join(found.samples)})" if found.samples else ""
    state = "it exists NOT VALID, so validating it fails, and " if exists else ""
    return (
        f"{found.describe('rows')} violate {target.name}{samples}: {state}{consequence}; "
        f"list them with: {found.query}"
    )
