"""Script 07, maintenance operations (runbook section 8), for this database's names.

What the runbook's schedule runs by hand: ``ANALYZE`` (weekly), ``VACUUM (ANALYZE)`` of the
high-traffic tables ``Message``, ``Notification`` and ``GiftSend`` (monthly), then the
unused-index and table-bloat checks (the same queries as script 01). ``pgrunbook maintain``
(vacuum what needs it, reindex concurrently), ``pgrunbook run weekly|monthly`` and
``pgrunbook schedule install`` run this schedule themselves; this script is its psql form.

``SKIP_LOCKED`` makes ``ANALYZE`` and ``VACUUM`` skip a table another session holds a
conflicting lock on (with a warning) instead of queueing behind it.
"""

from __future__ import annotations

from typing import Final

from psycopg import sql

from pgrunbook.change.step import StepContext
from pgrunbook.sqlexport import discovery, script
from pgrunbook.sqlexport.script import Body

# The runbook's monthly VACUUM (ANALYZE) targets, by their logical (Prisma) names.
HIGH_TRAFFIC_TABLES: Final = ("Message", "Notification", "GiftSend")
STATEMENT_TIMEOUT: Final = "30min"  # the runbook allows 5-30 minutes for this script
LOCK_TIMEOUT: Final = "1s"

ANALYZE_SQL: Final = sql.SQL("ANALYZE (SKIP_LOCKED) {};")
VACUUM_SQL: Final = sql.SQL("VACUUM (ANALYZE, SKIP_LOCKED) {};")


def _analyze(ctx: StepContext) -> str:
    # a partitioned table's ANALYZE covers its partitions
    tables = [t for t in ctx.catalog if not t.is_partition]
    if not tables:
        return script.comment(f"(no tables in schema {ctx.schema})")
    return "\n".join(
        ANALYZE_SQL.format(sql.Identifier(t.schema, t.name)).as_string(ctx.conn) for t in tables
    )


def _vacuum(ctx: StepContext) -> str:
    lines = []
    for logical in HIGH_TRAFFIC_TABLES:
        table = ctx.table(logical)
        if table is None:
            lines.append(script.comment(f"{logical}: no such table in {ctx.schema}, skipped"))
            continue
        target = sql.Identifier(table.schema, table.name)
        lines.append(VACUUM_SQL.format(target).as_string(ctx.conn))
    return "\n".join(lines)


def render(ctx: StepContext) -> Body:
    found = [ctx.table(logical) for logical in HIGH_TRAFFIC_TABLES]
    names = ", ".join(t.name for t in found if t is not None) or "(none here)"
    text = script.join(
        "\n".join(
            (
                script.set_session(ctx.conn, "statement_timeout", STATEMENT_TIMEOUT),
                script.set_session(ctx.conn, "lock_timeout", LOCK_TIMEOUT),
            )
        ),
        script.section(
            f"1. Update statistics: ANALYZE every table of schema {ctx.schema} (weekly)",
            _analyze(ctx),
        ),
        script.section(
            f"2. VACUUM (ANALYZE) the high-traffic tables {names} (monthly)",
            _vacuum(ctx),
        ),
        script.section(
            "3. Unused indexes (monthly check; drop only with enough statistics)",
            discovery.unused_indexes_query(ctx),
        ),
        script.section(
            "4. Table bloat: dead tuples over 10% of a table (monthly check)",
            discovery.dead_tuples_query(ctx),
        ),
    )
    return Body(
        title="runbook section 8: maintenance operations (ANALYZE, VACUUM, checks)",
        changes=(
            "planner statistics and free space only: ANALYZE of the schema's tables and "
            f"VACUUM (ANALYZE) of {names}; no data or schema changes"
        ),
        undo="nothing to undo (statistics and vacuumed space are not changes to roll back)",
        text=text,
        no_transaction="VACUUM cannot run inside a transaction",
        notes=(
            "Run it at a quiet time: VACUUM and ANALYZE read whole tables (no app locks: "
            "SKIP_LOCKED skips a table another session has locked).",
            "pgrunbook's way: pgrunbook maintain, pgrunbook run weekly|monthly, and "
            "pgrunbook schedule install (pg_cron) to run them on the runbook's schedule.",
        ),
    )
