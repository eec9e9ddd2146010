"""``02_performance_indexes.sql`` and its rollback script, from the same definitions as
``plan``: psql-runnable, idempotent, never inside a transaction."""

from __future__ import annotations

from typing import Final

from psycopg import sql

from pgrunbook import __version__
from pgrunbook.change.runner import ApplyPolicy
from pgrunbook.change.step import Script, Skip, StepContext
from pgrunbook.change.steps.indexes.wanted import ID, Found, Wanted, survey
from pgrunbook.indexsql import drop_concurrently

SCRIPT: Final = "02_performance_indexes.sql"
ROLLBACK_SCRIPT: Final = f"rollback_{ID}.sql"  # the CLI's rollback_<step>.sql

# As long as ``apply`` lets a concurrent build wait: its lock lets the app's reads and
# writes through, and it waits (as for a lock) for older transactions to end.
LOCK_TIMEOUT_MS: Final = ApplyPolicy().concurrent_timeout_ms

SETTINGS: Final = sql.SQL(
    "\\set ON_ERROR_STOP on\nSET lock_timeout = {};\nSET statement_timeout = 0;\n"
).format(sql.Literal(f"{LOCK_TIMEOUT_MS}ms"))

# true when an INVALID index of that name exists that no build is working on
INVALID_SQL: Final = sql.SQL(
    """SELECT EXISTS (
    SELECT 1
      FROM pg_catalog.pg_index i
      JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = {schema} AND c.relname = {name} AND NOT i.indisvalid
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_stat_progress_create_index p
                        WHERE p.index_relid = i.indexrelid)) AS invalid \\gset"""
)


def _comment(text: str) -> str:
    """``text`` as one SQL comment line (a newline in profile text cannot end it)."""
    return "-- " + " ".join(text.split())


def _header(ctx: StepContext, lines: list[str]) -> str:
    source = f"profile {ctx.profile.name!r} ({ctx.profile.source})"
    top = [f"pgrunbook {__version__}, schema {ctx.schema!r}, {source}.", ""]
    return "\n".join(("-- " + line).rstrip() for line in top + lines) + "\n\n"


def forward_script(ctx: StepContext) -> str:
    header = _header(
        ctx,
        [
            f"{SCRIPT}: the runbook's performance indexes (script 02).",
            "",
            "Each index is built with CREATE INDEX CONCURRENTLY: the app reads and writes",
            "the table while it is built. An INVALID index of the same name (left by an",
            "earlier failed or cancelled build) is dropped with DROP INDEX CONCURRENTLY and",
            "built again. Indexes that exist are left alone: the script can run again.",
            "",
            "Run it WITHOUT a transaction wrapper (no BEGIN, no psql -1/--single-transaction):",
            "CREATE INDEX CONCURRENTLY cannot run in a transaction. Use the direct endpoint:",
            f'  psql -X -v ON_ERROR_STOP=1 -f {SCRIPT} "$DIRECT_URL"',
            "",
            f"lock_timeout {LOCK_TIMEOUT_MS / 60_000:g} min: a concurrent build waits for older",
            "transactions to end without holding up the app; one that waits longer stops the",
            "script and leaves an INVALID index that the next run rebuilds.",
            "statement_timeout 0: a build takes as long as the table needs.",
            f"Undo: {ROLLBACK_SCRIPT} (or pgrunbook rollback indexes).",
        ],
    )
    parts = [header, SETTINGS.as_string()]
    for entry in survey(ctx):
        parts.append("\n" + _entry(entry))
    return "".join(parts)


def _entry(entry: Found | Skip) -> str:
    if isinstance(entry, Skip):
        return _comment(f"{entry.object}: skipped: {entry.reason}") + "\n"
    wanted = entry.wanted
    if entry.served_by_twin and entry.twin is not None:
        return (
            _comment(
                f"{wanted.object}: skipped: equivalent index {entry.twin.name} already "
                f"serves this ({entry.twin.definition})"
            )
            + "\n"
        )
    return _build(wanted)


def _build(wanted: Wanted) -> str:
    check = INVALID_SQL.format(schema=sql.Literal(wanted.schema), name=sql.Literal(wanted.name))
    return "\n".join(
        [
            _comment(f"{wanted.name} on {wanted.table.qualified}: {wanted.spec.serves}"),
            check.as_string(),
            "\\if :invalid",
            wanted.drop_sql + ";",
            "\\endif",
            wanted.create_sql + ";",
            "",
        ]
    )


def rollback_script(ctx: StepContext) -> str:
    header = _header(
        ctx,
        [
            f"{ROLLBACK_SCRIPT}: drops the runbook's performance indexes (section 6,",
            '"Rollback Indexes"), each with DROP INDEX CONCURRENTLY: reads and writes go on.',
            "Beware: it drops an index of one of these names even if it was there before",
            "the runbook ran; pgrunbook rollback indexes drops only those pgrunbook built.",
            "",
            "Run it without a transaction wrapper, on the direct endpoint:",
            f'  psql -X -v ON_ERROR_STOP=1 -f {ROLLBACK_SCRIPT} "$DIRECT_URL"',
        ],
    )
    drops = "".join(
        drop_concurrently(ctx.schema, spec.name).as_string() + ";\n" for spec in ctx.profile.indexes
    )
    return header + SETTINGS.as_string() + "\n" + drops


def export(ctx: StepContext) -> Script:
    return Script(forward_script(ctx), rollback_script(ctx))
