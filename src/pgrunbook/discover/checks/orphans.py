"""Orphan rows: child rows whose parent does not exist.

A validated foreign key guarantees there are none. A foreign key added ``NOT VALID`` only
checks new rows, and a relation kept by the app alone (Prisma's ``relationMode =
"prisma"``, or a ``roomId`` column nobody declared) checks nothing. The relations are the
ones ``schema.prisma`` declares in Prisma mode, else foreign keys plus inferred ones
(``Context.relations``). For each such relation
this counts the child rows whose key matches no parent row (a NULL key is not an orphan),
with a few sample ids and the query that lists them, at a bounded cost (see
``pgrunbook.violations``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from psycopg import sql

from pgrunbook.discover.check import Check, CheckResult
from pgrunbook.discover.context import Context
from pgrunbook.findings import Finding, Severity
from pgrunbook.relations import Relation
from pgrunbook.violations import CountLimits, Violations, column, count_violations, source

PARENT: Final = "p"

ORPHAN_SQL: Final = sql.SQL(
    "{present} AND NOT EXISTS (SELECT 1 FROM {parent} AS {alias} WHERE {match})"
)
NOT_NULL_SQL: Final = sql.SQL("{column} IS NOT NULL")
KEY_MATCH_SQL: Final = sql.SQL("{parent} = {child}")
DELETE_SQL: Final = sql.SQL("DELETE FROM {source} WHERE {predicate};")
VALIDATE_SQL: Final = sql.SQL("ALTER TABLE {table} VALIDATE CONSTRAINT {name};")


@dataclass(frozen=True)
class Thresholds(CountLimits):
    """The cost limits of each relation's count: statement timeout, sampling, sample ids."""


def candidates(relations: list[Relation]) -> list[Relation]:
    """Relations that do not guarantee their parent exists: NOT VALID, or with no foreign key
    (inferred, or declared in schema.prisma)."""
    return [
        r
        for r in relations
        if (r.source == "inferred" or not r.validated)
        and r.parent is not None
        and len(r.parent_columns) == len(r.columns) > 0
        and not r.child.is_partition  # counted once, through the partitioned table
    ]


def orphan_predicate(relation: Relation) -> sql.Composed:
    """Rows of the child (aliased ``t``) with a full key that matches no parent row."""
    assert relation.parent is not None
    alias = sql.Identifier(PARENT)
    present = sql.SQL(" AND ").join(NOT_NULL_SQL.format(column=column(c)) for c in relation.columns)
    match = sql.SQL(" AND ").join(
        KEY_MATCH_SQL.format(parent=sql.Identifier(PARENT, p), child=column(c))
        for c, p in zip(relation.columns, relation.parent_columns, strict=True)
    )
    parent = sql.Identifier(relation.parent.schema, relation.parent.name)
    return ORPHAN_SQL.format(present=present, parent=parent, alias=alias, match=match)


def _describe(relation: Relation) -> dict[str, Any]:
    return {
        "child": relation.child.qualified,
        "columns": list(relation.columns),
        "parent": relation.parent_name,
        "parent_columns": list(relation.parent_columns),
        "source": relation.source,
        "constraint": relation.constraint.name if relation.constraint else None,
    }


def _why(relation: Relation) -> str:
    if relation.constraint is not None:
        return f"foreign key {relation.constraint.name} is NOT VALID"
    if relation.source == "prisma":
        return "no foreign key, relation declared in schema.prisma"
    return "no foreign key, relation inferred from the column name"


def _repair(relation: Relation) -> str:
    nullable = all(
        (col := relation.child.column(name)) is not None and not col.not_null
        for name in relation.columns
    )
    return f"set {', '.join(relation.columns)} to NULL" if nullable else "point them at a parent"


def _fix(ctx: Context, relation: Relation, predicate: sql.Composed) -> str:
    fix = DELETE_SQL.format(source=source(relation.child), predicate=predicate)
    if relation.constraint is not None:
        table = sql.Identifier(relation.child.schema, relation.child.name)
        fix += sql.SQL("\n") + VALIDATE_SQL.format(
            table=table, name=sql.Identifier(relation.constraint.name)
        )
    return fix.as_string(ctx.conn)


def _finding(
    ctx: Context, relation: Relation, found: Violations, predicate: sql.Composed
) -> Finding:
    cols = ", ".join(relation.columns)
    details = {**found.to_json(), "relation": _describe(relation)}
    if found.count is None:
        return Finding(
            check=CHECK.id,
            severity=Severity.INFO,
            object=relation.child.qualified,
            message=f"{found.describe('orphan rows')} ({cols} -> {relation.parent_name}, "
            f"{_why(relation)}); run details.query at a quiet time",
            details=details,
        )
    return Finding(
        check=CHECK.id,
        severity=Severity.WARNING,
        object=relation.child.qualified,
        message=f"{found.describe('rows')} whose {cols} matches no row of "
        f"{relation.parent_name} ({_why(relation)}); review them (details.query), then "
        f"delete them (the fix) or {_repair(relation)}",
        details=details,
        fix=_fix(ctx, relation, predicate),
    )


def run(ctx: Context, limits: Thresholds) -> CheckResult:
    findings = []
    facts = []
    for relation in candidates(ctx.relations):
        predicate = orphan_predicate(relation)
        found = count_violations(ctx.conn, relation.child, predicate, limits)
        facts.append(
            {
                "relation": relation.label,
                "source": relation.source,
                "count": found.count,
                "sampled": found.sampled,
                "timed_out": found.timed_out,
            }
        )
        if found.found or found.timed_out:
            findings.append(_finding(ctx, relation, found, predicate))
    return CheckResult(findings, facts)


CHECK = Check(
    id="orphans",
    title="Orphan rows of unvalidated, inferred or declared relations",
    run=run,
    thresholds=Thresholds(),
)
