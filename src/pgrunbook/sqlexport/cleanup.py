"""Script 08, cleanup jobs (runbook section 3 step 8 and section 8): dry run first.

For each of the profile's retention policies (``RetentionPolicy.render``: the same predicate
the ``retention`` check counts with): a DRY RUN count of the rows it would delete, with the
oldest and newest affected timestamps, in a read-only transaction that is rolled back. Then
the DELETE statements, commented out, as the runbook says: review the counts, then
uncomment. Each DELETE removes one batch of at most ``BATCH_ROWS`` rows in its own short
transaction (run it again until psql prints ``DELETE 0``): it picks the batch's row
addresses (``ctid``) with a LIMIT and deletes by ``ctid = ANY (ARRAY(...))``, which the
planner runs as a TID scan (``ctid IN (SELECT ...)`` would read the whole table for every
batch). The predicate is repeated on the DELETE itself, so a row changed since the batch was
picked is deleted only if it still qualifies.

``pgrunbook cleanup`` is pgrunbook's way: dry run by default, ``--execute`` deletes in batches
by primary key; ``pgrunbook run daily|weekly`` and ``pgrunbook schedule install`` run it on the
runbook's schedule.
"""

from __future__ import annotations

from typing import Final

from psycopg import sql

from pgrunbook.change.step import StepContext
from pgrunbook.discover.checks import retention
from pgrunbook.resolve import find_column
from pgrunbook.sqlexport import script
from pgrunbook.sqlexport.script import Body
from pgrunbook.violations import LOCK_TIMEOUT_MS, source

BATCH_ROWS: Final = 5000
STATEMENT_TIMEOUT: Final = "60s"
LOCK_TIMEOUT: Final = f"{LOCK_TIMEOUT_MS}ms"

DRY_RUN_SQL: Final = sql.SQL(
    'SELECT {policy} AS policy, {table} AS "table", {cadence} AS cadence, '
    "count(*) AS would_delete, min({column}) AS oldest, max({column}) AS newest "
    "FROM {source} WHERE {predicate}"
)
UNION_ALL: Final = sql.SQL("\nUNION ALL\n")
DELETE_BATCH_SQL: Final = sql.SQL(
    "DELETE FROM {table}\n"
    " WHERE ctid = ANY (ARRAY(SELECT ctid FROM {table} WHERE {predicate} LIMIT {batch}))\n"
    "   AND {predicate};"
)


def render(ctx: StepContext) -> Body:
    counts: list[sql.Composed] = []
    deletes: list[str] = []
    skipped: list[str] = []
    for policy in ctx.profile.retention:
        table = ctx.table(policy.table)
        if table is None:
            skipped.append(f"{policy.name}: table {policy.table!r} not found in {ctx.schema}")
            continue
        predicate = policy.render(table)
        column = find_column(table, policy.column)
        if isinstance(predicate, str) or column is None:
            skipped.append(f"{policy.name}: {predicate}")
            continue
        counts.append(
            DRY_RUN_SQL.format(
                policy=sql.Literal(policy.name),
                table=sql.Literal(table.qualified),
                cadence=sql.Literal(policy.cadence),
                column=sql.Identifier(column.name),
                source=source(table),
                predicate=predicate,
            )
        )
        delete = DELETE_BATCH_SQL.format(
            table=sql.Identifier(table.schema, table.name),
            predicate=predicate,
            batch=sql.Literal(BATCH_ROWS),
        ).as_string(ctx.conn)
        deletes.append(
            "\n".join(
                (
                    script.comment(
                        f"{policy.name} ({policy.cadence}): "
                        f"{retention._describe(policy, table, column)}"
                    ),
                    script.comment(delete),
                )
            )
        )
    dry_run = (
        script.statement(ctx.conn, UNION_ALL.join(counts))
        if counts
        else script.comment("(no retention policy applies to this schema)")
    )
    text = script.join(
        script.comment("\n".join(f"skipped {s}" for s in skipped)) if skipped else "",
        "\n".join(
            (
                "BEGIN READ ONLY;",
                script.set_local(ctx.conn, "statement_timeout", STATEMENT_TIMEOUT),
                script.set_local(ctx.conn, "lock_timeout", LOCK_TIMEOUT),
            )
        ),
        script.section(
            "DRY RUN: rows each retention policy would delete (nothing is deleted)", dry_run
        ),
        "ROLLBACK;",
        script.comment(
            "DELETE: review the counts above, then uncomment a policy's statement and run this "
            "file again.\n"
            f"Each run deletes one batch of at most {BATCH_ROWS} rows in its own short "
            "transaction; run it\n"
            "again until psql prints DELETE 0 (the dry run above shows what is left)."
        ),
        "\n".join(
            (
                script.set_session(ctx.conn, "statement_timeout", STATEMENT_TIMEOUT),
                script.set_session(ctx.conn, "lock_timeout", LOCK_TIMEOUT),
            )
        ),
        *deletes,
    )
    return Body(
        title="runbook step 8: cleanup jobs (DRY RUN; the DELETE statements are commented out)",
        changes=(
            "nothing as generated: the dry run is read only; each DELETE you uncomment removes "
            f"up to {BATCH_ROWS} rows past its retention policy"
        ),
        undo=(
            "deleted rows come back only from a backup (pgrunbook backup, or a Neon branch "
            "made before): take one first"
        ),
        text=text,
        no_transaction=(
            "the dry run is a transaction of its own, and each DELETE batch must commit on its own"
        ),
        notes=(
            "pgrunbook's way: pgrunbook cleanup (dry run by default, --execute deletes in "
            "batches); pgrunbook schedule install runs it daily/weekly.",
        ),
    )
