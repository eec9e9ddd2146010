"""What step 03 needs on this database (which tables get a trigger, which are left alone and
why), and ``plan()``.

Every table of the schema with an ``updatedAt`` or ``updated_at`` column is a candidate,
not only the profile's. A table is left alone when it is a partition (its partitioned
parent's trigger is cloned onto it), when the column is not a ``timestamp`` or
``timestamptz``, or when an enabled trigger under another name already maintains the column
(``maintains()`` of the discovery check). A trigger with our name is taken as ours
(``present``) and never touched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

import psycopg

from pgrunbook.catalog import Column, Table, Trigger
from pgrunbook.change.lockmodes import LockMode
from pgrunbook.change.operation import Operation
from pgrunbook.change.refs import ObjectRef, RefKind
from pgrunbook.change.step import Skip, StepContext, StepPlan
from pgrunbook.change.steps.triggers.definitions import (
    COLUMNS,
    FUNCTIONS,
    ID,
    MODES,
    Mode,
    create_trigger,
    drop_trigger,
    function_object,
    trigger_name,
    trigger_object,
)
from pgrunbook.change.steps.triggers.functions import (
    FunctionPlan,
    function_operation,
    plan_function,
    read_functions,
)
from pgrunbook.discover.checks.updated_at_triggers import maintains
from pgrunbook.rows import fetch

PARENTS_SQL: Final = """
SELECT i.inhrelid::int8 AS oid, pn.nspname AS schema, pc.relname AS name
  FROM pg_inherits i
  JOIN pg_class pc ON pc.oid = i.inhparent
  JOIN pg_namespace pn ON pn.oid = pc.relnamespace
 WHERE i.inhrelid = ANY(%(oids)s)
"""


@dataclass
class Parent:
    oid: int
    schema: str
    name: str


@dataclass(frozen=True)
class Target:
    """A table that gets (or has) our trigger."""

    table: Table
    column: Column
    mode: Mode
    trigger: str
    present: bool  # a trigger with our name is already there
    problem: str = ""  # present but not as pgrunbook makes it (disabled, another function)

    @property
    def as_wanted(self) -> bool:
        return not self.problem

    @property
    def object(self) -> str:
        return trigger_object(self.table.schema, self.table.name, self.trigger)


@dataclass
class Analysis:
    functions: list[FunctionPlan]
    targets: list[Target] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def function(self, column: str) -> FunctionPlan:
        return next(f for f in self.functions if f.column == column)


def column_object(table: Table, column: str) -> str:
    return f"column {table.qualified}.{column}"


def _parents(conn: psycopg.Connection[Any], tables: list[Table]) -> dict[int, str]:
    oids = [t.oid for t in tables]
    if not oids:
        return {}
    found = fetch(conn, Parent, PARENTS_SQL, {"oids": oids})
    return {p.oid: f"{p.schema}.{p.name}" for p in found}


def candidate_columns(table: Table) -> list[Column]:
    """The table's ``updatedAt`` / ``updated_at`` columns, camelCase first."""
    return [col for name in COLUMNS if (col := table.column(name)) is not None]


def _present_target(
    table: Table, candidates: list[tuple[Column, Mode]], columns: list[Column], trigger: Trigger
) -> Target:
    """Our name is taken: the trigger counts as ours, left as it is; and what is odd about it."""
    column, mode = next(
        ((c, m) for c, m in candidates if maintains(trigger, c.name)),
        candidates[0] if candidates else (columns[0], Mode.UTC),
    )
    wanted = f"{table.schema}.{FUNCTIONS[column.name]}"
    calls = f"{trigger.function_schema}.{trigger.function}"
    if not trigger.is_enabled:
        problem = f"is disabled (ALTER TABLE ... ENABLE TRIGGER {trigger.name} turns it on)"
    elif not trigger.before_update_row:
        problem = "is not a BEFORE UPDATE ... FOR EACH ROW trigger"
    elif calls != wanted:
        problem = f"calls {calls}(), not {wanted}()"
    else:
        problem = ""
    return Target(table, column, mode, trigger.name, present=True, problem=problem)


def _candidates(
    table: Table, columns: list[Column], ours: Trigger | None, analysis: Analysis
) -> list[tuple[Column, Mode]]:
    """The columns a trigger of ours could maintain (others get a Skip, or a warning)."""
    out: list[tuple[Column, Mode]] = []
    for col in columns:
        mode = MODES.get(col.type_oid)
        if mode is None:
            reason = (
                f"{col.name} is {col.type}; the trigger maintains only timestamp and "
                "timestamptz columns"
            )
            analysis.skipped.append(Skip(column_object(table, col.name), reason))
            continue
        setters = [t for t in table.triggers if t is not ours and maintains(t, col.name)]
        enabled = [t.name for t in setters if t.is_enabled]
        if enabled and not (ours is not None and maintains(ours, col.name)):
            reason = f"already maintained by trigger {', '.join(enabled)}"
            analysis.skipped.append(Skip(column_object(table, col.name), reason))
            continue
        if setters and not enabled and ours is None:
            analysis.warnings.append(
                f"{table.qualified}.{col.name}: trigger {', '.join(t.name for t in setters)} "
                f"would maintain it but is disabled; pgrunbook adds "
                f"{trigger_name(table.name)}"
            )
        out.append((col, mode))
    return out


def analyse_table(table: Table, columns: list[Column], analysis: Analysis) -> None:
    """Add ``table``'s target, or its skips, to ``analysis``."""
    name = trigger_name(table.name)
    ours = next((t for t in table.triggers if t.name == name), None)
    candidates = _candidates(table, columns, ours, analysis)
    if ours is not None:
        target = _present_target(table, candidates, columns, ours)
        if target.problem:
            analysis.warnings.append(
                f"trigger {target.trigger} on {table.qualified} {target.problem}; pgrunbook "
                "leaves it as it is (verify tests whether it keeps the column current)"
            )
    elif not candidates:
        return
    else:
        column, mode = candidates[0]
        target = Target(table, column, mode, name, present=False)
    for other, _ in candidates:
        if other is not target.column:
            reason = (
                f"the table also has {target.column.name}, which its one trigger {name} maintains"
            )
            analysis.skipped.append(Skip(column_object(table, other.name), reason))
    if not target.present and analysis.function(target.column.name).state == "refused":
        reason = f"{FUNCTIONS[target.column.name]}() cannot be created (see refused)"
        analysis.skipped.append(Skip(target.object, reason))
        return
    analysis.targets.append(target)


def analyse(ctx: StepContext) -> Analysis:
    """Read the functions, look at every table's columns and triggers (no change)."""
    existing = read_functions(ctx.conn, ctx.schema)
    analysis = Analysis([plan_function(ctx.schema, c, existing) for c in COLUMNS])
    tables = [(t, cols) for t in ctx.catalog if (cols := candidate_columns(t))]
    parents = _parents(ctx.conn, [t for t, _ in tables if t.is_partition])
    for table, columns in tables:
        if table.is_partition:
            parent = parents.get(table.oid, "its partitioned table")
            analysis.skipped.append(
                Skip(
                    trigger_object(table.schema, table.name, trigger_name(table.name)),
                    f"a partition of {parent}: the trigger on {parent} is cloned onto it",
                )
            )
            continue
        analyse_table(table, columns, analysis)
    return analysis


def trigger_operation(target: Target) -> Operation:
    table, column = target.table, target.column
    create = create_trigger(
        table.schema, table.name, target.trigger, column.name, target.mode, replace=False
    )
    writes = "the UTC time" if target.mode is Mode.UTC else "now()"
    return Operation(
        step=ID,
        object=target.object,
        sql=create.as_string(),
        reverse_sql=drop_trigger(table.schema, table.name, target.trigger).as_string(),
        transactional=True,
        lock_mode=LockMode.SHARE_ROW_EXCLUSIVE,  # CREATE TRIGGER: blocks writes, not reads
        table=(table.schema, table.name),
        why=f"keeps {column.name} ({column.type}) current on every UPDATE: writes {writes}",
        ref=ObjectRef(RefKind.TRIGGER, target.trigger, table.schema, table.name),
        creates=True,
        reverse_lock_mode=LockMode.ACCESS_EXCLUSIVE,  # DROP TRIGGER
    )


def plan(ctx: StepContext) -> StepPlan:
    analysis = analyse(ctx)
    result = StepPlan(ID, skipped=analysis.skipped, warnings=analysis.warnings)
    for fn in analysis.functions:
        if fn.state == "present":
            result.present.append(function_object(ctx.schema, fn.column))
        elif fn.state == "refused" and fn.refusal is not None:
            result.refused.append(fn.refusal)
        else:
            result.operations.append(function_operation(ctx.schema, fn))
            if fn.state == "replace":
                result.warnings.append(
                    f"{ctx.schema}.{FUNCTIONS[fn.column]}() exists with another definition: "
                    "apply replaces it, rollback restores the recorded old definition"
                )
    for target in analysis.targets:
        if target.present:
            result.present.append(target.object)
        else:
            result.operations.append(trigger_operation(target))
    return result
