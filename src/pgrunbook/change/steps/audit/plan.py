"""Planning script 04 for this database: what is missing of the audit table, its indexes,
``audit_log()`` and the row-change triggers, as operations that know their inverse.

A table already there under the audit table's name is used as it is when it can serve
(every expected column, of a compatible type); otherwise it is refused and left untouched:
pgrunbook never alters a table it did not create.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import psycopg

from pgrunbook.catalog import INDOPTION_DESC, Index, Table, Trigger
from pgrunbook.change.lockmodes import LockMode
from pgrunbook.change.operation import Operation
from pgrunbook.change.refs import ObjectRef, RefKind
from pgrunbook.change.step import Refusal, Skip, StepContext, StepPlan
from pgrunbook.change.steps.audit.ddl import (
    AUDIT_LOG,
    INDEXES,
    ROW_CHANGE,
    SEARCH_PATH_CONFIG,
    AuditIndex,
    FunctionDef,
    audit_log,
    create_index,
    create_table,
    create_trigger,
    drop_index,
    drop_table,
    drop_trigger,
    row_change,
    trigger_name,
)
from pgrunbook.change.steps.audit.target import ID, AuditTarget, audit_target, problems
from pgrunbook.indexsql import current_builds
from pgrunbook.rows import fetch

# the function with exactly this signature (to_regprocedure), as pg_proc records it
FUNCTION_SQL: Final = """
SELECT p.oid::int8 AS oid, p.prosrc AS source, coalesce(p.proconfig, '{}') AS config,
       p.prorettype::regtype::text AS returns, l.lanname AS language,
       coalesce(p.proargnames, '{}') AS arg_names, p.pronargdefaults::int AS defaults,
       p.prosecdef AS security_definer, p.prokind::text AS kind,
       pg_has_role(p.proowner, 'USAGE') AS owned,
       CASE WHEN p.prokind IN ('f', 'p') THEN pg_get_functiondef(p.oid) END AS definition
  FROM pg_proc p
  JOIN pg_language l ON l.oid = p.prolang
 WHERE p.oid = to_regprocedure(%(signature)s)
"""

# pg_trigger.tgtype: ROW | INSERT | DELETE | UPDATE, and not BEFORE / INSTEAD OF / TRUNCATE
TRIGGER_TYPE_MASK: Final = 1 | 2 | 4 | 8 | 16 | 32 | 64
TRIGGER_TYPE_WANTED: Final = 1 | 4 | 8 | 16


@dataclass
class ExistingFunction:
    oid: int
    source: str
    config: list[str]
    returns: str
    language: str
    arg_names: list[str]
    defaults: int
    security_definer: bool
    kind: str  # f function, p procedure, a aggregate, w window
    owned: bool  # the current user may replace it (owner, or member of the owning role)
    definition: str | None  # pg_get_functiondef: what rollback restores

    def same_as(self, fn: FunctionDef) -> bool:
        return (
            self.source == fn.source
            and self.config == [SEARCH_PATH_CONFIG]
            and self.returns == fn.returns
            and self.language == "plpgsql"
            and tuple(self.arg_names) == fn.arg_names
            and self.defaults == fn.defaults
            and not self.security_definer
        )

    def replaceable_by(self, fn: FunctionDef) -> bool:
        """Whether CREATE OR REPLACE can turn it into ``fn`` (same return type, no
        parameter renamed, no default removed)."""
        names = self.arg_names or [""] * len(fn.arg_names)
        return (
            self.returns == fn.returns
            and all(old in ("", new) for old, new in zip(names, fn.arg_names, strict=False))
            and self.defaults <= fn.defaults
        )


def existing_function(conn: psycopg.Connection[Any], fn: FunctionDef) -> ExistingFunction | None:
    found = fetch(conn, ExistingFunction, FUNCTION_SQL, {"signature": fn.regprocedure})
    return found[0] if found else None


def plan(ctx: StepContext) -> StepPlan:
    out = StepPlan(ID)
    target = audit_target(ctx)
    issues = problems(ctx.conn, target)
    if issues:
        _refuse_table(ctx, target, issues, out)
        return out
    if target.exists:
        out.present.append(f"table {target.qualified}")
    else:
        out.operations.append(_table_op(target))
    _plan_indexes(ctx, target, out)
    _plan_function(
        ctx.conn, audit_log(target), out,
        why="audit_log(): the app's one call to write an audit row",
    )  # fmt: skip
    _plan_row_change(ctx, target, out)
    return out


def _refuse_table(
    ctx: StepContext, target: AuditTarget, issues: dict[str, list[str]], out: StepPlan
) -> None:
    what = []
    if "missing" in issues:
        what.append(f"lacks the columns {', '.join(issues['missing'])}")
    if "incompatible" in issues:
        what.append(f"has columns of other types ({', '.join(issues['incompatible'])})")
    if "required" in issues:
        what.append(
            f"requires values audit rows leave empty ({', '.join(issues['required'])} are "
            "NOT NULL without a default)"
        )
    out.refused.append(
        Refusal(
            object=f"table {target.qualified}",
            reason=f"{target.qualified} exists but {'; '.join(what)}; pgrunbook never alters "
            "a table it did not create, so the audit log, audit_log() and the row-change "
            "triggers are not created",
            fix=f"add what is missing to {target.qualified} yourself (a migration of your "
            "app), or name another audit table in the profile ([audit] table)",
            details=dict(issues),
        )
    )
    because = f"the audit table {target.qualified} is refused"
    for spec in INDEXES:
        out.skipped.append(Skip(f"index {target.schema}.{target.index_name(spec.suffix)}",
                                because))  # fmt: skip
    out.skipped.append(Skip(f"function {target.schema}.{AUDIT_LOG}", because))
    for logical in row_change_tables(ctx):
        out.skipped.append(Skip(f"row-change trigger on {logical}", because))


def _table_op(target: AuditTarget) -> Operation:
    return Operation(
        step=ID,
        object=f"table {target.qualified}",
        sql=create_table(target, if_not_exists=False).as_string(),
        reverse_sql=drop_table(target, cascade=False).as_string(),
        transactional=True,
        lock_mode=None,  # a new table: no lock on anything the app uses
        table=(target.schema, target.name),
        why="the audit log: who did what to which object, with old and new values",
        ref=ObjectRef(RefKind.TABLE, target.name, target.schema),
        creates=True,
        reverse_lock_mode=LockMode.ACCESS_EXCLUSIVE,
    )


def serves(table: Table, index: Index, target: AuditTarget, spec: AuditIndex) -> bool:
    """Whether an index already there is ours in all but name (same btree key columns in
    the same order and directions, no predicate, valid)."""
    if index.method != "btree" or index.predicate or not index.valid or index.has_expressions:
        return False
    keys = [
        (table.column_by_num[n].name, bool(opt & INDOPTION_DESC))
        for n, opt in zip(index.attnums[: index.key_count], index.options, strict=False)
        if n in table.column_by_num
    ]
    wanted = [(target.columns[logical], desc) for logical, desc in spec.columns]
    return keys == wanted


def _plan_indexes(ctx: StepContext, target: AuditTarget, out: StepPlan) -> None:
    table = target.table
    building = current_builds(ctx.conn) if table is not None else []
    for spec in INDEXES:
        name = target.index_name(spec.suffix)
        obj = f"index {target.schema}.{name}"
        create = create_index(target, spec, concurrently=True).as_string()
        drop = drop_index(target, spec).as_string()
        if table is not None:
            mine = next((i for i in table.indexes if i.name == name), None)
            if mine is not None and mine.valid:
                out.present.append(obj)
                continue
            if mine is not None and any(b.builds(mine) for b in building):
                out.warnings.append(f"{obj} is being built by another session; re-run later")
                continue
            if mine is not None:
                out.operations.append(
                    Operation(
                        step=ID,
                        object=f"invalid {obj}",
                        sql=drop,
                        reverse_sql=None,  # an INVALID index serves nothing: nothing to undo
                        transactional=False,
                        lock_mode=LockMode.SHARE_UPDATE_EXCLUSIVE,
                        table=(target.schema, target.name),
                        why="an earlier build failed and left it INVALID; it is rebuilt next",
                    )
                )
            elif other := next((i for i in table.indexes
                                if serves(table, i, target, spec)), None):  # fmt: skip
                out.present.append(f"index {target.schema}.{other.name} (serves as {name})")
                continue
        out.operations.append(
            Operation(
                step=ID,
                object=obj,
                sql=create,
                reverse_sql=drop,
                transactional=False,
                lock_mode=LockMode.SHARE_UPDATE_EXCLUSIVE,
                table=(target.schema, target.name),
                why=f"serves {spec.serves}",
                cleanup_sql=drop,
                ref=ObjectRef(RefKind.INDEX, name, target.schema),
                creates=True,
            )
        )


def _plan_function(
    conn: psycopg.Connection[Any], fn: FunctionDef, out: StepPlan, *, why: str
) -> None:
    """Create ``fn``, or replace a function of that signature recording its old definition
    (``pg_get_functiondef``) as the inverse; refuse what cannot be replaced."""
    obj = f"function {fn.qualified}"
    old = existing_function(conn, fn)
    if old is not None and old.same_as(fn):
        out.present.append(obj)
        return
    create = fn.create().as_string()
    drop = fn.drop().as_string()
    if old is None:
        sql_text, reverse = create, drop
    elif old.kind != "f" or not old.owned or old.definition is None:
        what = "is not a function" if old.kind != "f" else "belongs to a role we are not"
        out.refused.append(
            Refusal(
                object=obj,
                reason=f"{fn.regprocedure} already exists and {what}, so pgrunbook cannot "
                "replace it",
                fix="drop or rename it (as its owner), or run pgrunbook as its owner",
                details={"kind": old.kind, "owned": old.owned},
            )
        )
        return
    elif old.replaceable_by(fn):
        sql_text = create
        # CREATE OR REPLACE cannot take back the parameter defaults ours adds either
        restore = old.definition
        reverse = restore if old.defaults >= fn.defaults else _then(drop, restore)
        out.warnings.append(f"{obj} exists with another definition: it is replaced "
                            "(rollback restores the old one)")  # fmt: skip
    else:
        # CREATE OR REPLACE cannot change its return type or parameter names
        sql_text, reverse = _then(drop, create), _then(drop, old.definition)
        out.warnings.append(f"{obj} exists with another return type or parameter names: it "
                            "is dropped and created again in one transaction (rollback "
                            "restores the old one; grants on it are not kept)")  # fmt: skip
    out.operations.append(
        Operation(
            step=ID,
            object=obj,
            sql=sql_text,
            reverse_sql=reverse,
            transactional=True,
            why=why,
            ref=ObjectRef(RefKind.FUNCTION, fn.name, fn.schema),
            creates=old is None,
        )
    )


def _then(first: str, second: str) -> str:
    """Two statements run as one operation (in one transaction)."""
    return ";\n".join((first, second))


def row_change_tables(ctx: StepContext) -> tuple[str, ...]:
    """The tables (logical names) that get the row-change trigger."""
    if ctx.options.audit_tables is not None:
        return ctx.options.audit_tables
    return ctx.profile.audit.row_change_tables


def audited_tables(ctx: StepContext, target: AuditTarget, out: StepPlan | None) -> list[Table]:
    """The row-change tables that exist here (each once); the others are skipped in ``out``."""
    tables: list[Table] = []
    for logical in row_change_tables(ctx):
        table = ctx.table(logical)
        what = f"row-change trigger on {logical}"
        if logical == ctx.profile.audit.table or (table and table.name == target.name):
            if out is not None:
                out.skipped.append(Skip(what, "the audit table does not audit itself"))
        elif table is None:
            if out is not None:
                out.skipped.append(Skip(what, f"table {logical!r} not found in schema "
                                              f"{ctx.schema}"))  # fmt: skip
        elif table not in tables:
            tables.append(table)
    return tables


def is_row_change_trigger(trigger: Trigger, schema: str) -> bool:
    """Whether ``trigger`` is pgrunbook's: AFTER INSERT OR UPDATE OR DELETE, FOR EACH ROW,
    running ``<schema>.audit_row_change()``."""
    return (
        trigger.function == ROW_CHANGE
        and trigger.function_schema == schema
        and trigger.type & TRIGGER_TYPE_MASK == TRIGGER_TYPE_WANTED
    )


def _plan_row_change(ctx: StepContext, target: AuditTarget, out: StepPlan) -> None:
    tables = audited_tables(ctx, target, out)
    if not tables:
        return
    _plan_function(
        ctx.conn, row_change(target), out,
        why="the row-change trigger function: old and new rows to the audit log",
    )  # fmt: skip
    for table in tables:
        name = trigger_name(table.name)
        obj = f"trigger {table.schema}.{table.name}.{name}"
        existing = next((t for t in table.triggers if t.name == name), None)
        if existing is not None and is_row_change_trigger(existing, ctx.schema):
            out.present.append(obj)
            continue
        if existing is not None:
            out.refused.append(
                Refusal(
                    object=obj,
                    reason=f"{table.qualified} already has a trigger {name} running "
                    f"{existing.function_schema}.{existing.function}(), not pgrunbook's "
                    "row-change trigger; pgrunbook does not replace it",
                    fix=f"rename or drop that trigger, or leave {table.name} out of the "
                    "row-change tables",
                    details={"trigger": name, "function": existing.function},
                )
            )
            continue
        out.operations.append(
            Operation(
                step=ID,
                object=obj,
                sql=create_trigger(table.schema, table.name, or_replace=False).as_string(),
                reverse_sql=drop_trigger(table.schema, table.name).as_string(),
                transactional=True,
                lock_mode=LockMode.SHARE_ROW_EXCLUSIVE,
                table=(table.schema, table.name),
                why=f"records every insert, update and delete of {table.name} (old and new "
                "row) in the audit log",
                ref=ObjectRef(RefKind.TRIGGER, name, table.schema, table.name),
                creates=True,
                reverse_lock_mode=LockMode.ACCESS_EXCLUSIVE,
            )
        )
