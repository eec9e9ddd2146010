"""``pgrunbook fix constraints``: repair the rows that break a profile constraint, the way
the profile documents (``fix_set`` assigns, ``fix_delete`` removes, else by hand).

One short transaction per constraint, under ``locking.with_lock_retries``: the violating
rows are locked (``FOR UPDATE``), changed or deleted, and one audit row per changed row
records the old row (``oldValues``) and the new one (``newValues``, NULL for a delete);
then the rows are counted again in the same transaction and, if any still violates, the
whole fix is rolled back and reported. Only rows that violate are touched, and rows are
deleted only for a constraint whose documented strategy is to delete them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from psycopg import errors, sql

from pgrunbook import __version__
from pgrunbook.catalog import Table
from pgrunbook.change.step import Skip, StepContext
from pgrunbook.change.steps.audit import audit_insert_sql, audit_table, audit_target
from pgrunbook.change.steps.constraints.statements import Target, count, resolve
from pgrunbook.errors import ConfigError
from pgrunbook.locking import LockPolicy, with_lock_retries
from pgrunbook.profile.model import ConstraintSpec

ACTION: Final = "pgrunbook.fix_constraint"
ENTITY_ID_MAX: Final = 255  # the audit table's entityId is varchar(255)

# The fix as one statement: lock the violating rows, change them, audit each changed row.
# ``pgrunbook_*`` names keep the helper columns apart from the table's own (an assignment
# such as {email} = ... || {id} refers to the table's columns unqualified).
FIX_SQL: Final = sql.SQL(
    "WITH old AS (\n"
    "    SELECT t.ctid AS pgrunbook_tid, {key} AS pgrunbook_key, to_jsonb(t) AS pgrunbook_old\n"
    "      FROM {table} AS t\n"
    "     WHERE {violation}\n"
    "       FOR UPDATE OF t\n"
    "), changed AS (\n"
    "{change}\n"
    "), audited AS (\n"
    "    {insert}\n"
    "    SELECT gen_random_uuid(), {action}, {entity_type}, pgrunbook_key,\n"
    "           pgrunbook_old, pgrunbook_new, {metadata}::jsonb\n"
    "      FROM changed\n"
    "    RETURNING 1\n"
    ")\n"
    "SELECT (SELECT count(*) FROM changed) AS rows_changed,\n"
    "       (SELECT count(*) FROM audited) AS audit_rows"
)
UPDATE_SQL: Final = sql.SQL(
    "    UPDATE {table} AS t SET {assignments}\n"
    "      FROM old\n"
    "     WHERE t.ctid = old.pgrunbook_tid AND {violation}\n"
    "    RETURNING old.pgrunbook_key, old.pgrunbook_old, to_jsonb(t) AS pgrunbook_new"
)
DELETE_SQL: Final = sql.SQL(
    "    DELETE FROM {table} AS t\n"
    "     USING old\n"
    "     WHERE t.ctid = old.pgrunbook_tid AND {violation}\n"
    "    RETURNING old.pgrunbook_key, old.pgrunbook_old, NULL::jsonb AS pgrunbook_new"
)
RECOUNT_SQL: Final = sql.SQL("SELECT count(*) FROM {table} AS t WHERE {violation}")
KEY_SQL: Final = sql.SQL("left({key}::text, {max})")
# Foreign keys whose ON DELETE action would change rows of another table.
CASCADING_SQL: Final = """
SELECT con.conname AS name, con.conrelid::regclass::text AS child,
       CASE con.confdeltype WHEN 'c' THEN 'CASCADE' WHEN 'n' THEN 'SET NULL'
                            ELSE 'SET DEFAULT' END AS action
  FROM pg_constraint con
 WHERE con.contype = 'f' AND con.confrelid = %(oid)s AND con.confdeltype IN ('c', 'n', 'd')
 ORDER BY 2, 1
"""


@dataclass
class FixResult:
    """What the fix of one constraint did (or, in a dry run, would do)."""

    constraint: str
    table: str | None  # schema.table, None when the table does not exist
    strategy: str  # update, delete or manual
    violations: int | None = None  # rows that broke it before (None: not counted)
    rows_changed: int = 0
    audit_rows: int = 0
    sql: list[str] = field(default_factory=list)  # the statements run (or to run), in order
    query: str | None = None  # SELECT listing the violating rows
    skipped: str | None = None  # why nothing was changed
    note: str = ""  # the profile's documented strategy
    dry_run: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "constraint": self.constraint,
            "table": self.table,
            "strategy": self.strategy,
            "violations": self.violations,
            "rows_changed": self.rows_changed,
            "audit_rows": self.audit_rows,
            "sql": self.sql,
            "query": self.query,
            "skipped": self.skipped,
            "note": self.note,
            "dry_run": self.dry_run,
        }


class StillViolating(Exception):
    """Raised inside the fix's transaction to roll it back: rows still break the rule."""

    def __init__(self, left: int) -> None:
        super().__init__(
            f"{left} row still violates it" if left == 1 else f"{left} rows still violate it"
        )
        self.left = left


def _key(table: Table) -> sql.Composed:
    """The primary key of a row of ``t`` as text (a row literal for a composite key)."""
    pk = table.primary_key
    names = table.column_names(pk.columns) if pk else []
    if len(names) == 1:
        key: sql.Composable = sql.Identifier("t", names[0])
    elif names:
        key = sql.SQL("ROW({})").format(sql.SQL(", ").join(sql.Identifier("t", n) for n in names))
    else:
        key = sql.SQL("t.ctid")
    return KEY_SQL.format(key=key, max=sql.Literal(ENTITY_ID_MAX))


def fix_statements(ctx: StepContext, target: Target) -> list[str] | str:
    """The fix and the re-count for ``target``, or why there is no automatic fix."""
    fix = target.spec.fix
    table = sql.Identifier(target.table.schema, target.table.name)
    if fix.set is not None:
        assignments = fix.set.render(target.table)
        if isinstance(assignments, str):
            return f"the fix cannot be written here: {assignments}"
        change = UPDATE_SQL.format(table=table, assignments=assignments, violation=target.violation)
    elif fix.delete:
        change = DELETE_SQL.format(table=table, violation=target.violation)
    else:
        return f"no automatic fix: {fix.note or 'fix the rows by hand'}"
    metadata = {"constraint": target.name, "strategy": fix.strategy, "note": fix.note,
                "tool": "pgrunbook", "version": __version__}  # fmt: skip
    statement = FIX_SQL.format(
        key=_key(target.table),
        table=table,
        violation=target.violation,
        change=change,
        insert=audit_insert_sql(ctx),
        action=sql.Literal(ACTION),
        entity_type=sql.Literal(target.table.name),
        metadata=sql.Literal(json.dumps(metadata, sort_keys=True)),
    )
    recount = RECOUNT_SQL.format(table=table, violation=target.violation)
    return [statement.as_string(), recount.as_string()]


def _cascades(ctx: StepContext, table: Table) -> list[str]:
    rows = ctx.conn.execute(CASCADING_SQL, {"oid": table.oid}).fetchall()
    return [f"{r[1]}.{r[0]} ON DELETE {r[2]}" for r in rows]


def _select(ctx: StepContext, names: Sequence[str]) -> list[ConstraintSpec]:
    known = [spec.name for spec in ctx.profile.constraints]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(
            f"the profile has no constraint {unknown[0]!r}", f"constraints: {', '.join(known)}"
        )
    return [spec for spec in ctx.profile.constraints if not names or spec.name in names]


def _require_audit_table(ctx: StepContext) -> None:
    if audit_table(ctx) is not None:
        return
    target = audit_target(ctx)
    if target.exists:
        raise ConfigError(
            f"the audit table {target.qualified} cannot hold pgrunbook's audit rows",
            "see `pgrunbook plan audit`",
        )
    raise ConfigError("the audit table does not exist: run `pgrunbook apply audit` first")


def _run(
    ctx: StepContext, target: Target, statements: list[str], policy: LockPolicy
) -> tuple[int, int]:
    """Run the fix in one transaction; roll it back if rows still violate afterwards."""
    fix, recount = (s.encode() for s in statements)

    def attempt() -> tuple[int, int]:
        with ctx.conn.transaction():
            row = ctx.conn.execute(fix).fetchone()
            assert row is not None
            left = ctx.conn.execute(recount).fetchone()
            assert left is not None
            if int(left[0]):
                raise StillViolating(int(left[0]))
            return int(row[0]), int(row[1])

    return with_lock_retries(ctx.conn, attempt, policy, what=f"fixing {target.name}")


def fix_one(
    ctx: StepContext, spec: ConstraintSpec, *, dry_run: bool, policy: LockPolicy
) -> FixResult:
    """Repair the rows that break ``spec`` (or say why not, or what it would run)."""
    strategy = spec.fix.strategy
    target = resolve(ctx, spec)
    if isinstance(target, Skip):
        return FixResult(spec.name, None, strategy, skipped=target.reason, note=spec.fix.note,
                         dry_run=dry_run)  # fmt: skip
    result = FixResult(spec.name, target.table.qualified, strategy, note=spec.fix.note,
                       dry_run=dry_run)  # fmt: skip
    existing = target.existing()
    if existing is not None and existing.type == "c" and existing.validated:
        result.skipped = "the constraint exists and is validated: no row can violate it"
        return result
    found = count(ctx, target)
    result.violations, result.query = found.count, found.query
    if found.count == 0:
        result.skipped = "no row violates it"
        return result
    statements = fix_statements(ctx, target)
    if isinstance(statements, str):
        result.skipped = f"{statements}; list the rows with: {found.query}"
        return result
    result.sql = statements
    if strategy == "delete" and (cascades := _cascades(ctx, target.table)):
        result.skipped = (
            "deleting them would also change rows of other tables through "
            f"{', '.join(cascades)}: fix them by hand; list them with: {found.query}"
        )
        return result
    if dry_run:
        return result
    try:
        result.rows_changed, result.audit_rows = _run(ctx, target, statements, policy)
    except StillViolating as exc:
        result.skipped = (
            f"rolled back, nothing changed: after the fix {exc} (list them with: {found.query})"
        )
    except errors.IntegrityError as exc:  # a unique key the new values collide with, an FK
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        result.skipped = f"rolled back, nothing changed: {first}"
    except errors.QueryCanceled:
        result.skipped = (
            f"rolled back, nothing changed: the fix did not finish within "
            f"{policy.statement_timeout_ms / 1000:g} s"
        )
    return result


def fix_constraints(
    ctx: StepContext,
    names: Sequence[str] = (),
    *,
    dry_run: bool,
    policy: LockPolicy | None = None,
) -> list[FixResult]:
    """Fix the rows that violate the named profile constraints (all when none is named).

    ``dry_run``: count and render the SQL, change nothing. Raises ConfigError (nothing
    changed) for an unknown name, or when a constraint with an automatic fix is selected and
    the audit table does not exist. LockBudgetExceeded when a lock stays taken too long.
    """
    specs = _select(ctx, names)
    if any(spec.fix.strategy != "manual" for spec in specs):
        _require_audit_table(ctx)
    policy = policy or LockPolicy(lock_timeout_ms=100, statement_timeout_ms=60_000)
    return [fix_one(ctx, spec, dry_run=dry_run, policy=policy) for spec in specs]
