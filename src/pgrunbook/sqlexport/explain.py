"""Script 10, EXPLAIN ANALYZE templates: the profile's critical queries (``[[queries]]``).

The same catalog ``pgrunbook explain`` runs, in this database's names, with the parameter
values sampled from the data (the hot and the typical value, each a block) substituted as
literals; every block is one ``EXPLAIN (ANALYZE, BUFFERS)`` in a transaction that is rolled
back, titled with the index it should use. ``pgrunbook explain`` runs them several times,
compares with the index used, and keeps baselines (``--baseline``, ``--compare``).

``explain_queries`` is older: a query derived from each index of the profile (its leading
ascending columns compared with the first key of the table they refer to, the runbook's
``WHERE "roomId" = (SELECT id FROM "Room" LIMIT 1)``); the demo still explains its
room-history query that way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from psycopg import sql

from pgrunbook.catalog import Table
from pgrunbook.change.step import Skip, StepContext
from pgrunbook.explain.catalog import render_catalog
from pgrunbook.explain.params import Sampler
from pgrunbook.explain.run import Binding, bindings
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


def _values(binding: Binding) -> str:
    """``:room_id = '...' (hot: the messages.room_id with the most rows (1,234))``."""
    return "\n".join(
        f":{name} = {value!r} ({binding.notes[name]})" for name, value in binding.values.items()
    )


def render(ctx: StepContext) -> Body:
    queries, skipped = render_catalog(ctx.catalog, ctx.profile.queries)
    sampler = Sampler(ctx.conn, ctx.catalog)
    blocks = []
    n = 0
    for query in queries:
        bound = bindings(query, sampler, {}, {})
        if isinstance(bound, str):
            skipped.append(Skip(query.name, bound))
            continue
        for binding in bound:
            n += 1
            title = (
                f"{n}. {query.name} ({binding.variant}): {query.spec.description} "
                f"(should use {query.index})"
            )
            parts = [script.comment(_values(binding))] if binding.values else []
            blocks.append(
                script.section(
                    title,
                    *parts,
                    "BEGIN;",
                    script.set_local(ctx.conn, "statement_timeout", STATEMENT_TIMEOUT),
                    EXPLAIN_SQL.format(query.bind(binding.values)).as_string(ctx.conn),
                    "ROLLBACK;",
                )
            )
    if skipped:
        blocks.append(script.comment("\n".join(f"skipped {s.object}: {s.reason}" for s in skipped)))
    if not n:
        blocks.append(script.comment("(no critical query of the profile applies to this schema)"))
    text = script.join(*blocks)
    return Body(
        title="runbook step 10: EXPLAIN (ANALYZE, BUFFERS) of the app's critical queries",
        changes="nothing: each EXPLAIN ANALYZE runs in a transaction that is rolled back",
        undo="nothing to undo",
        text=text,
        notes=(
            "Compare the plans before and after script 02: each should read the index named "
            "in its title (Index Scan, or Bitmap Index Scan).",
            "Parameter values were sampled from the data at export time: the hot value (most "
            "rows) and a typical one (the median).",
            "pgrunbook's way: pgrunbook explain (--baseline FILE before, --compare FILE after: "
            "the speedup per query; exit code 1 when a query does not use its index).",
        ),
    )
