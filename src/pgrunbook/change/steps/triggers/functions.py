"""The two functions: create them, or replace one that differs (recording its old definition
with ``pg_get_functiondef`` so rollback restores it), or refuse when it cannot be replaced.

A function of the name counts as ours when it is a plain plpgsql function returning
``trigger`` whose source is exactly ``definitions.function_body`` and whose options are the
defaults (CREATE OR REPLACE would reset any other).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

import psycopg
from psycopg import sql

from pgrunbook.change.operation import Operation
from pgrunbook.change.refs import ObjectRef, RefKind
from pgrunbook.change.step import Refusal
from pgrunbook.change.steps.triggers.definitions import (
    COLUMNS,
    FUNCTIONS,
    ID,
    create_function,
    drop_function,
    function_body,
    function_object,
)
from pgrunbook.rows import fetch

# Every function of the runbook's names in the schema (any arguments): only the one without
# arguments is ours to compare, but any of the name makes the journal's reference exist.
FUNCTIONS_SQL: Final = """
SELECT p.proname AS name, p.pronargs::int AS nargs, p.prokind::text AS kind,
       l.lanname AS language, format_type(p.prorettype, NULL) AS returns,
       p.prosrc AS source,
       (NOT p.prosecdef AND p.proconfig IS NULL AND p.provolatile = 'v' AND NOT p.proisstrict
        AND NOT p.proleakproof AND p.proparallel = 'u' AND p.procost = 100) AS default_options,
       pg_get_userbyid(p.proowner)::text AS owner,
       pg_has_role(current_user, p.proowner, 'USAGE') AS owned,
       CASE WHEN p.prokind IN ('f', 'p') THEN pg_get_functiondef(p.oid) END AS definition
  FROM pg_proc p
  JOIN pg_namespace n ON n.oid = p.pronamespace
  JOIN pg_language l ON l.oid = p.prolang
 WHERE n.nspname = %(schema)s AND p.proname = ANY(%(names)s)
 ORDER BY p.proname, p.pronargs
"""

_KINDS: Final = {"p": "a procedure", "a": "an aggregate", "w": "a window function"}


@dataclass
class ExistingFunction:
    name: str
    nargs: int
    kind: str  # f p a w
    language: str
    returns: str
    source: str
    default_options: bool
    owner: str
    owned: bool
    definition: str | None


FunctionState = Literal["create", "replace", "present", "refused"]


@dataclass(frozen=True)
class FunctionPlan:
    """What happens to one of the two functions."""

    column: str  # the column it sets: updatedAt (camel) or updated_at (snake)
    state: FunctionState
    other_overloads: bool = False  # functions of the name with arguments exist
    old_definition: str | None = None  # replace: pg_get_functiondef before we act
    refusal: Refusal | None = None


def _is_ours(fn: ExistingFunction, column: str) -> bool:
    return (
        fn.kind == "f"
        and fn.language == "plpgsql"
        and fn.returns == "trigger"
        and fn.source == function_body(column)
        and fn.default_options
    )


def _why_not_replaceable(fn: ExistingFunction) -> str | None:
    if fn.kind != "f":
        return f"is {_KINDS.get(fn.kind, 'not a plain function')}"
    if fn.returns != "trigger":
        return f"returns {fn.returns}, and CREATE OR REPLACE cannot change a return type"
    if not fn.owned:
        return f"is owned by {fn.owner}, and only its owner can replace it"
    return None


def plan_function(schema: str, column: str, existing: list[ExistingFunction]) -> FunctionPlan:
    name = FUNCTIONS[column]
    same_name = [f for f in existing if f.name == name]
    overloads = any(f.nargs > 0 for f in same_name)
    current = next((f for f in same_name if f.nargs == 0), None)
    if current is None:
        return FunctionPlan(column, "create", other_overloads=overloads)
    if _is_ours(current, column):
        return FunctionPlan(column, "present", other_overloads=overloads)
    problem = _why_not_replaceable(current)
    if problem is not None:
        rename = sql.SQL("ALTER ROUTINE {}() RENAME TO {}").format(
            sql.Identifier(schema, name), sql.Identifier(f"{name}_old")
        )
        refusal = Refusal(
            object=function_object(schema, column),
            reason=f"a function {schema}.{name}() already exists with another definition and "
            f"it {problem}; no table gets a trigger for its {column} column",
            fix=f"{rename.as_string()}; then run: pgrunbook apply triggers",
            details={"owner": current.owner, "kind": current.kind, "returns": current.returns},
        )
        return FunctionPlan(column, "refused", other_overloads=overloads, refusal=refusal)
    return FunctionPlan(
        column, "replace", other_overloads=overloads, old_definition=current.definition
    )


def read_functions(conn: psycopg.Connection[Any], schema: str) -> list[ExistingFunction]:
    names = [FUNCTIONS[c] for c in COLUMNS]
    return fetch(conn, ExistingFunction, FUNCTIONS_SQL, {"schema": schema, "names": names})


def function_operation(schema: str, fn: FunctionPlan) -> Operation:
    name = FUNCTIONS[fn.column]
    replace = fn.state == "replace"
    if replace:
        reverse = fn.old_definition
        why = f"replaces the existing {name}() with the runbook's (rollback restores it)"
    else:
        reverse = drop_function(schema, fn.column).as_string()
        why = f"sets {fn.column} to the current time for the trg_*_updated_at triggers"
    return Operation(
        step=ID,
        object=function_object(schema, fn.column),
        sql=create_function(schema, fn.column, replace=replace).as_string(),
        reverse_sql=reverse,
        transactional=True,
        why=why,
        ref=ObjectRef(RefKind.FUNCTION, name, schema),
        # the reference is by name: it only proves the function new when no overload exists
        creates=fn.state == "create" and not fn.other_overloads,
    )
