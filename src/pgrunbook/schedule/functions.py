"""The SQL routines the pg_cron jobs call, installed in the ``pgrunbook`` schema.

Per retention policy a procedure ``pgrunbook.cleanup_<policy>()`` deletes in batches by primary
key with the very DELETE ``pgrunbook cleanup --order key`` runs (``delete_statement``, walking
the key upwards like ``run_cleanup``), each batch its own transaction (a procedure CALLed at
top level may COMMIT) under a short ``lock_timeout``: a batch that cannot get its locks is
retried a few times after a pause, then the run gives up (recorded as interrupted; the next run
carries on). Every run is recorded in ``pgrunbook.cleanup_runs``. ``pgrunbook.run_daily()`` /
``run_weekly()`` call the cadence's cleanups (weekly then runs ``ANALYZE``). Each routine
carries a comment starting with ``MARK`` so that ``schedule remove`` drops exactly what
``install`` created.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import psycopg
from psycopg import sql

from pgrunbook import __version__
from pgrunbook.cleanup import ResolvedPolicy, delete_statement
from pgrunbook.cleanup.batches import AFTER_SQL, CLEANUP_LOCKS, DEFAULT_BATCH_SIZE, DELETE_SQL
from pgrunbook.schedule.jobs import cadence_procedure

SCHEMA: Final = "pgrunbook"
MARK: Final = "pgrunbook schedule"
NAME_BYTES: Final = 63  # NAMEDATALEN - 1
LOCK_ATTEMPTS: Final = 10  # tries per batch before the run gives up
LOCK_PAUSE_SECONDS: Final = 0.2  # times the attempt number, between tries

# Variables are prefixed so that they never shadow a column the DELETE names. Batches walk
# the key upwards from the last key deleted and, at the end, make one more pass from the
# lowest key (as ``run_cleanup`` does); a pass from the lowest key that deletes nothing ends
# the run.
CLEANUP_BODY: Final = sql.SQL(
    """
DECLARE
    pgrunbook_started timestamptz := clock_timestamp();
    pgrunbook_total bigint := 0;
    pgrunbook_batches integer := 0;
    pgrunbook_deleted bigint := 0;
    pgrunbook_last {key_type};
    pgrunbook_after {key_type};
    pgrunbook_attempts integer;
    pgrunbook_gave_up boolean := false;
BEGIN
    LOOP
        pgrunbook_attempts := 0;
        LOOP
            PERFORM set_config('lock_timeout', {lock_timeout}, true);
            BEGIN
                IF pgrunbook_after IS NULL THEN
                    {delete_first} INTO pgrunbook_deleted, pgrunbook_last;
                ELSE
                    {delete_next} INTO pgrunbook_deleted, pgrunbook_last;
                END IF;
                EXIT;
            EXCEPTION WHEN lock_not_available THEN
                pgrunbook_attempts := pgrunbook_attempts + 1;
            END;
            IF pgrunbook_attempts >= {attempts} THEN
                pgrunbook_gave_up := true;
                EXIT;
            END IF;
            PERFORM pg_sleep({pause} * pgrunbook_attempts);
        END LOOP;
        EXIT WHEN pgrunbook_gave_up;
        IF pgrunbook_deleted = 0 THEN
            EXIT WHEN pgrunbook_after IS NULL;
            pgrunbook_after := NULL;
            CONTINUE;
        END IF;
        pgrunbook_after := pgrunbook_last;
        pgrunbook_total := pgrunbook_total + pgrunbook_deleted;
        pgrunbook_batches := pgrunbook_batches + 1;
        COMMIT;
    END LOOP;
    INSERT INTO pgrunbook.cleanup_runs
        (policy, table_name, predicate, deleted, batches, batch_size, interrupted, seconds,
         tool_version)
    VALUES ({policy}, {table}, {predicate}, pgrunbook_total, pgrunbook_batches, {batch_size},
            pgrunbook_gave_up, extract(epoch FROM clock_timestamp() - pgrunbook_started),
            {version});
    COMMIT;
    IF pgrunbook_gave_up THEN
        RAISE WARNING 'pgrunbook: % gave up after % lock timeouts (% rows deleted)',
            {policy}, {attempts}, pgrunbook_total;
    END IF;
END
"""
)
KEY_TYPE_SQL: Final = sql.SQL("{column}%TYPE")
AFTER_VARIABLE: Final = sql.Identifier("pgrunbook_after")

CADENCE_BODY: Final = sql.SQL("\nBEGIN\n{calls}{analyze}END\n")
NOTHING_LINE: Final = sql.SQL("    NULL;\n")
CALL_LINE: Final = sql.SQL("    CALL {procedure}();\n")
ANALYZE_LINE: Final = sql.SQL("    ANALYZE;\n")

CREATE_SQL: Final = sql.SQL("CREATE OR REPLACE PROCEDURE {procedure}() LANGUAGE plpgsql AS {body}")
COMMENT_SQL: Final = sql.SQL("COMMENT ON PROCEDURE {procedure}() IS {comment}")
DROP_SQL: Final = sql.SQL("DROP PROCEDURE IF EXISTS {procedure}()")

INSTALLED_SQL: Final = """
SELECT p.proname::text
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'pgrunbook' AND p.prokind = 'p'
   AND starts_with(coalesce(obj_description(p.oid, 'pg_proc'), ''), 'pgrunbook schedule')
 ORDER BY 1
"""


@dataclass(frozen=True)
class Routine:
    """One procedure in the ``pgrunbook`` schema, with the SQL that creates it."""

    name: str
    does: str
    create: sql.Composed

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(SCHEMA, self.name)

    def statements(self) -> list[sql.Composed]:
        comment = sql.Literal(f"{MARK} {__version__}: {self.does}")
        return [self.create, COMMENT_SQL.format(procedure=self.ident, comment=comment)]

    def to_json(self) -> dict[str, Any]:
        return {"routine": f"{SCHEMA}.{self.name}()", "does": self.does}


def cleanup_name(policy: ResolvedPolicy) -> str:
    """``cleanup_<policy>``, cut to PostgreSQL's 63-byte identifier limit (as the server
    would cut it), so that install and remove name the same procedure."""
    return f"cleanup_{policy.name}".encode()[:NAME_BYTES].decode(errors="ignore")


def next_batch_statement(policy: ResolvedPolicy, batch_size: int) -> sql.Composed:
    """``delete_statement(policy, batch_size, after=...)`` with the procedure's variable
    ``pgrunbook_after`` for the last key (``delete_statement`` renders a value)."""
    key = sql.Identifier(policy.key)
    return DELETE_SQL.format(
        table=policy.ident,
        key=key,
        where=policy.predicate,
        after=AFTER_SQL.format(key=key, last=AFTER_VARIABLE),
        limit=sql.Literal(batch_size),
    )


def cleanup_routine(
    policy: ResolvedPolicy,
    batch_size: int = DEFAULT_BATCH_SIZE,
    *,
    attempts: int = LOCK_ATTEMPTS,
    pause: float = LOCK_PAUSE_SECONDS,
) -> Routine:
    """``pgrunbook.cleanup_<policy>()``: the batched delete, recorded in cleanup_runs.

    A batch that waits more than the lock timeout is retried after ``pause`` seconds times
    the attempt number; after ``attempts`` tries the run stops (recorded as interrupted).
    """
    name = cleanup_name(policy)
    body = CLEANUP_BODY.format(
        lock_timeout=sql.Literal(f"{CLEANUP_LOCKS.lock_timeout_ms}ms"),
        key_type=KEY_TYPE_SQL.format(
            column=sql.Identifier(policy.table.schema, policy.table.name, policy.key)
        ),
        delete_first=delete_statement(policy, batch_size),
        delete_next=next_batch_statement(policy, batch_size),
        attempts=sql.Literal(attempts),
        pause=sql.Literal(pause),
        policy=sql.Literal(policy.name),
        table=sql.Literal(policy.table.qualified),
        predicate=sql.Literal(policy.predicate.as_string()),
        batch_size=sql.Literal(batch_size),
        version=sql.Literal(f"{__version__} (schedule)"),
    )
    procedure = sql.Identifier(SCHEMA, name)
    create = CREATE_SQL.format(procedure=procedure, body=sql.Literal(body.as_string()))
    does = f"delete {policy.name} from {policy.table.qualified} in batches of {batch_size}"
    return Routine(name, does, create)


def cadence_routine(cadence: str, cleanups: Sequence[Routine], *, analyze: bool) -> Routine:
    """``pgrunbook.run_<cadence>()``: CALLs the cadence's cleanups, then ANALYZE if asked."""
    calls = sql.SQL("").join(CALL_LINE.format(procedure=r.ident) for r in cleanups)
    last = ANALYZE_LINE if analyze else (sql.SQL("") if cleanups else NOTHING_LINE)
    body = CADENCE_BODY.format(calls=calls, analyze=last)
    procedure = cadence_procedure(cadence)
    create = CREATE_SQL.format(procedure=procedure, body=sql.Literal(body.as_string()))
    parts = [f"{r.name}()" for r in cleanups] + (["ANALYZE"] if analyze else [])
    return Routine(f"run_{cadence}", f"{cadence}: " + (", ".join(parts) or "nothing"), create)


def drop_statement(name: str) -> sql.Composed:
    return DROP_SQL.format(procedure=sql.Identifier(SCHEMA, name))


def installed_routines(conn: psycopg.Connection[Any]) -> list[str]:
    """The names of the procedures ``schedule install`` created (by their comment)."""
    return [str(row[0]) for row in conn.execute(INSTALLED_SQL)]
