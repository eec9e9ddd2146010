"""Script 10, EXPLAIN ANALYZE templates: the queries the profile's indexes are built for.

One ``EXPLAIN (ANALYZE, BUFFERS)`` per index of the profile (script 02), in this database's
names, each in its own transaction that is rolled back. The query is derived from the
index: its leading ascending columns (all but the last) are compared for equality, its
partial predicate is the WHERE clause, and the remaining columns are the ORDER BY, in the
index's directions, with ``LIMIT 50``. For ``idx_message_room_created_desc`` this is the
runbook's room-history query (section 5): ``WHERE "roomId" = (SELECT id FROM "Room" LIMIT
1) ORDER BY "createdAt" DESC LIMIT 50``. A compared column that refers to another table
(a foreign key, or a relation inferred from its name) takes that table's first key, as the
runbook does; any other takes the first value of the table itself.

``pgrunbook explain`` (a later issue) will run these with ``--baseline`` and ``--compare``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from psycopg import sql

from pgrunbook.catalog import Table
from pgrunbook.change.step import Skip, StepContext
from pgrunbook.profile.model import IndexSpec
from pgrunbook.relations import Relation, all_relations
from pgrunbook.resolve import find_column
from pgrunbook.sqlexport import script
from pgrunbook.sqlexport.script import Body

ROW_LIMIT: Final = 50
STATEMENT_TIMEOUT: Final = "60s"

QUERY_SQL: Final = sql.SQL("SELECT * FROM {table}{where} ORDER BY {order} LIMIT {limit}")
WHERE_SQL: Final = sql.SQL(" WHERE {}")
AND: Final = sql.SQL(" AND ")
EQUALS_SQL: Final = sql.SQL("{column} = ({value})")
FIRST_VALUE_SQL: Final = sql.SQL("SELECT {column} FROM {table} LIMIT 1")
DESC_SQL: Final = sql.SQL("{} DESC")
EXPLAIN_SQL: Final = sql.SQL("EXPLAIN (ANALYZE, BUFFERS) {};")


@dataclass(frozen=True)
class ExplainQuery:
    """A query one of the profile's indexes serves, for this database."""

    index: str  # the index it should use
    table: str  # schema.name
    serves: str  # the profile's description of the query
    query: sql.Composed  # the SELECT (without EXPLAIN)


def _parent(relations: list[Relation], table: Table, column: str) -> Relation | None:
    for r in relations:
        if r.child.oid == table.oid and r.columns == (column,) and r.parent is not None:
            return r
    return None


def _value(relations: list[Relation], table: Table, column: str) -> sql.Composed:
    parent = _parent(relations, table, column)
    if parent is not None and parent.parent is not None and len(parent.parent_columns) == 1:
        return FIRST_VALUE_SQL.format(
            column=sql.Identifier(parent.parent_columns[0]),
            table=sql.Identifier(parent.parent.schema, parent.parent.name),
        )
    return FIRST_VALUE_SQL.format(
        column=sql.Identifier(column), table=sql.Identifier(table.schema, table.name)
    )


def query_for(spec: IndexSpec, table: Table, relations: list[Relation]) -> sql.Composed | str:
    """The query ``spec`` serves on ``table``, or why there is none (a missing column)."""
    rendered = spec.render(table)
    if isinstance(rendered, str):
        return rendered
    names = []
    for col in spec.columns:
        found = find_column(table, col.name)
        if found is None:  # render() found them all
            return f"column {col.name!r} not found in {table.qualified}"
        names.append(found.name)
    equal = 0  # leading ascending columns, all but the last: compared for equality
    while equal < len(spec.columns) - 1 and not spec.columns[equal].descending:
        equal += 1
    conditions: list[sql.Composable] = [
        EQUALS_SQL.format(column=sql.Identifier(name), value=_value(relations, table, name))
        for name in names[:equal]
    ]
    if rendered.predicate is not None:
        conditions.append(rendered.predicate)
    order = sql.SQL(", ").join(
        DESC_SQL.format(sql.Identifier(name)) if col.descending else sql.Identifier(name)
        for col, name in zip(spec.columns[equal:], names[equal:], strict=True)
    )
    where = WHERE_SQL.format(AND.join(conditions)) if conditions else sql.SQL("")
    return QUERY_SQL.format(
        table=sql.Identifier(table.schema, table.name),
        where=where,
        order=order,
        limit=sql.Literal(ROW_LIMIT),
    )


def explain_queries(ctx: StepContext) -> tuple[list[ExplainQuery], list[Skip]]:
    """The queries of the profile's indexes for this database, and those it cannot have."""
    relations = all_relations(ctx.catalog)
    queries, skipped = [], []
    for spec in ctx.profile.indexes:
        table = ctx.table(spec.table)
        if table is None:
            skipped.append(Skip(spec.name, f"table {spec.table!r} not found in {ctx.schema}"))
            continue
        query = query_for(spec, table, relations)
        if isinstance(query, str):
            skipped.append(Skip(spec.name, query))
            continue
        queries.append(ExplainQuery(spec.name, table.qualified, spec.serves, query))
    return queries, skipped


def render(ctx: StepContext) -> Body:
    queries, skipped = explain_queries(ctx)
    blocks = []
    for n, q in enumerate(queries, 1):
        title = f"{n}. {q.table}: {q.serves} (should use {q.index})"
        blocks.append(
            script.section(
                title,
                "BEGIN;",
                script.set_local(ctx.conn, "statement_timeout", STATEMENT_TIMEOUT),
                EXPLAIN_SQL.format(q.query).as_string(ctx.conn),
                "ROLLBACK;",
            )
        )
    if skipped:
        blocks.append(script.comment("\n".join(f"skipped {s.object}: {s.reason}" for s in skipped)))
    if not queries:
        blocks.append(script.comment("(no index of the profile applies to this schema)"))
    text = script.join(*blocks)
    return Body(
        title="runbook step 10: EXPLAIN (ANALYZE, BUFFERS) of the queries the indexes serve",
        changes="nothing: each EXPLAIN ANALYZE runs in a transaction that is rolled back",
        undo="nothing to undo",
        text=text,
        notes=(
            "Compare the plans before and after script 02: each should become an Index Scan "
            "(or Bitmap Index Scan) using the index named in its title.",
            "pgrunbook's way: pgrunbook explain (a later issue: --baseline, --compare).",
        ),
    )
