"""Script 10, EXPLAIN ANALYZE templates: the profile's critical queries (``[[queries]]``).

The same catalog ``pgrunbook explain`` runs, in this database's names, with the parameter
values sampled from the data (the hot and the typical value, each a block) substituted as
literals; every block is one ``EXPLAIN (ANALYZE, BUFFERS)`` in a transaction that is rolled
back, titled with the index it should use. ``pgrunbook explain`` runs them several times,
compares with the index used, and keeps baselines (``--baseline``, ``--compare``).
"""

from __future__ import annotations

from typing import Final

from psycopg import sql

from pgrunbook.change.step import Skip, StepContext
from pgrunbook.explain.catalog import render_catalog
from pgrunbook.explain.params import Sampler
from pgrunbook.explain.run import Binding, bindings
from pgrunbook.sqlexport import script
from pgrunbook.sqlexport.script import Body

STATEMENT_TIMEOUT: Final = "60s"

EXPLAIN_SQL: Final = sql.SQL("EXPLAIN (ANALYZE, BUFFERS) {};")


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
