"""Script 09, monitoring queries: ``pgrunbook monitor``'s snapshot as psql queries.

The same SQL the monitor modules run (``pgrunbook.monitor.*``), with their parameters
rendered as the defaults of ``monitor.Thresholds``: connections by state and application,
long-running queries, sessions idle in a transaction, lock waits with their blockers
(``pg_blocking_pids``), cache hit ratios, dead tuples, index usage, replication (the
replica's lag or the primary's standbys, chosen with psql's ``\\if``), and the top
statements of ``pg_stat_statements`` when it is installed and loaded (also ``\\if``).
Everything runs in one READ ONLY transaction, so the activity views are one consistent
snapshot, and it is rolled back.
"""

from __future__ import annotations

from typing import Any, Final

from psycopg import sql

from pgrunbook import pgss
from pgrunbook.change.step import StepContext
from pgrunbook.monitor import (
    cache,
    connections,
    dead_tuples,
    idle_in_transaction,
    index_usage,
    locks,
    long_running,
    replication,
)
from pgrunbook.monitor.snapshot import LOCK_TIMEOUT_MS, STATEMENT_TIMEOUT_MS, Thresholds
from pgrunbook.sqlexport import script
from pgrunbook.sqlexport.script import Body

CACHE_REPORT_SQL: Final = sql.SQL(
    """
SELECT c.scope, c.hit, c.read, round(c.hit::numeric / nullif(c.hit + c.read, 0), 4) AS ratio
  FROM ({cache}) AS c
"""
)

# Whether pg_stat_statements can be read here, and where it lives, for psql's \if. A role
# that cannot see shared_preload_libraries (only its privileged readers can) is given the
# benefit of the doubt: Neon preloads it.
PGSS_GUARD_SQL: Final = """
SELECT e.extname IS NOT NULL
       AND coalesce((SELECT s.setting ~ %(name)s FROM pg_settings s
                      WHERE s.name = 'shared_preload_libraries'), true) AS has_pgss,
       n.nspname AS pgss_schema
  FROM (SELECT 1) AS one
  LEFT JOIN pg_extension e ON e.extname = %(name)s
  LEFT JOIN pg_namespace n ON n.oid = e.extnamespace
"""
# The view, in the schema the guard found (psql quotes the variable as an identifier).
PGSS_VIEW: Final = sql.SQL(':"pgss_schema".pg_stat_statements')
# pgss.TOP_SQL's columns by extension version: total_exec_time since 1.8, toplevel since 1.9.
TOTAL_SINCE: Final = (1, 8)
TOPLEVEL_SINCE: Final = (1, 9)
ASSUMED_VERSION: Final = "1.10"  # not installed when exported: what CREATE EXTENSION gives
GSET: Final = " \\gset"


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".") if part.isdigit())


def _top(version: tuple[int, ...], order: str) -> sql.Composed:
    """pgss.TOP_SQL for the installed version (as ``pgss.top_statements`` formats it)."""
    return pgss.TOP_SQL.format(
        view=PGSS_VIEW,
        total=sql.Identifier("total_exec_time" if version >= TOTAL_SINCE else "total_time"),
        toplevel=sql.SQL("s.toplevel" if version >= TOPLEVEL_SINCE else "TRUE"),
        order=sql.Identifier(order),
    )


def _statements(ctx: StepContext, limits: Thresholds) -> str:
    ext = ctx.server.extension(pgss.EXTENSION)
    version = _version(ext.installed_version or ASSUMED_VERSION)
    reason = pgss.statements_available(ctx.server) or (
        f"{pgss.EXTENSION} is not installed in this database: run {pgss.ENABLE_SQL}"
    )
    params: dict[str, Any] = {
        "chars": limits.query_chars,
        "all_databases": False,
        "min_mean_ms": 0.0,
        "limit": limits.top,
    }
    lists = []
    for order, min_calls, title in (
        ("total_ms", 1, "by total time"),
        ("mean_ms", limits.statements_min_calls, "by mean time"),
    ):
        lists.append(
            script.echo(f"Top {limits.top} statements {title} (at least {min_calls} calls)")
        )
        query = _top(version, order)
        lists.append(script.statement(ctx.conn, query, {**params, "min_calls": min_calls}))
    guard = script.render(ctx.conn, PGSS_GUARD_SQL, {"name": pgss.EXTENSION}) + GSET
    return "\n".join(
        (
            guard,
            "\\if :has_pgss",
            *lists,
            "\\else",
            script.echo(f"{pgss.EXTENSION} cannot be read here: {reason}"),
            "\\endif",
        )
    )


def _replication(ctx: StepContext) -> str:
    return "\n".join(
        (
            script.render(ctx.conn, replication.ROLE_SQL) + GSET,
            "\\if :in_recovery",
            script.echo("This server is a replica: how far replay is behind"),
            script.statement(ctx.conn, replication.REPLICA_SQL),
            "\\else",
            script.echo("This server is a primary: its standbys (none is normal)"),
            script.statement(ctx.conn, replication.STANDBYS_SQL),
            "\\endif",
        )
    )


def render(ctx: StepContext) -> Body:
    limits = Thresholds()
    schema = {"schema": ctx.schema}
    top = {"limit": limits.top}
    chars = {"query_chars": limits.query_chars}
    conn = ctx.conn
    sections = [
        script.section(
            "1. Connections: the server's total against max_connections",
            script.statement(conn, connections.LIMITS_SQL),
        ),
        script.section(
            "2. Connections of this database by state",
            script.statement(conn, connections.BY_STATE_SQL),
        ),
        script.section(
            f"3. Connections by application (top {limits.top})",
            script.statement(conn, connections.BY_APPLICATION_SQL, top),
        ),
        script.section(
            f"4. Long-running queries (active for {limits.long_query_seconds:g} s or more)",
            script.statement(
                conn,
                long_running.LONG_RUNNING_SQL,
                {**top, **chars, "min_seconds": limits.long_query_seconds},
            ),
        ),
        script.section(
            "5. Sessions idle in a transaction (longest first)",
            script.statement(conn, idle_in_transaction.IDLE_IN_TRANSACTION_SQL, {**top, **chars}),
        ),
        script.section(
            "6. Lock waits: each waiting session and its blockers (pg_blocking_pids)",
            script.statement(conn, locks.LOCKS_SQL, chars),
        ),
        script.section(
            f"7. Cache hit ratios (database, and schema {ctx.schema}'s tables and indexes)",
            script.statement(conn, CACHE_REPORT_SQL.format(cache=sql.SQL(cache.CACHE_SQL)), schema),
        ),
        script.section(
            f"8. Dead tuples (top {limits.top} tables)",
            script.statement(conn, dead_tuples.DEAD_TUPLES_SQL, {**schema, **top}),
        ),
        script.section(
            f"9. Index usage: tables by rows read in sequential scans (top {limits.top})",
            script.statement(conn, index_usage.TABLES_SQL, {**schema, **top}),
        ),
        script.section(
            f"10. Index usage: the least used indexes (top {limits.top})",
            script.statement(conn, index_usage.INDEXES_SQL, {**schema, **top}),
        ),
        script.section("11. Replication", _replication(ctx)),
        script.section("12. pg_stat_statements: the top statements", _statements(ctx, limits)),
    ]
    text = script.join(
        "\n".join(
            (
                "BEGIN READ ONLY;",
                script.set_local(conn, "statement_timeout", f"{STATEMENT_TIMEOUT_MS}ms"),
                script.set_local(conn, "lock_timeout", f"{LOCK_TIMEOUT_MS}ms"),
            )
        ),
        *sections,
        "ROLLBACK;",
    )
    return Body(
        title="runbook step 9: monitoring queries (read only)",
        changes="nothing: every query runs in one READ ONLY transaction that is rolled back",
        undo="nothing to undo",
        text=text,
        notes=(
            "Run it any time; the activity sections cover the whole database, the rest "
            f"schema {ctx.schema}.",
            "pgrunbook's way: pgrunbook monitor (--watch refreshes it, --json for scripts).",
        ),
    )
