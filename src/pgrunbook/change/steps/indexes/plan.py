"""What the indexes step would do now: build the missing indexes, rebuild INVALID ones, and
name the transactions a concurrent build would wait for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import psycopg

from pgrunbook.change.lockmodes import LockMode
from pgrunbook.change.step import Skip, StepContext, StepPlan
from pgrunbook.change.steps.indexes.wanted import ID, ROOM_HISTORY_INDEX, Found, survey
from pgrunbook.rows import fetch

# Transactions in this database older than the threshold that CREATE INDEX CONCURRENTLY
# waits for: those holding a snapshot (it waits for every snapshot older than its own) and
# writers of a table it builds on (it waits twice for the holders of locks that conflict
# with SHARE). A read-committed reader between statements holds neither.
LONG_TRANSACTIONS_SQL: Final = """
SELECT a.pid, a.usename::text AS username, a.application_name, a.state,
       extract(epoch FROM clock_timestamp() - a.xact_start)::float8 AS seconds,
       left(a.query, 120) AS query
  FROM pg_stat_activity a
 WHERE a.pid <> pg_backend_pid()
   AND a.datname = current_database()
   AND a.xact_start < clock_timestamp() - make_interval(secs => %(seconds)s)
   AND (a.backend_xmin IS NOT NULL
        OR EXISTS (SELECT 1 FROM pg_locks l
                    WHERE l.pid = a.pid AND l.locktype = 'relation' AND l.granted
                      AND l.mode = ANY(%(modes)s)
                      AND l.relation = ANY(%(tables)s::oid[])))
 ORDER BY a.xact_start
"""
# the lock modes a concurrent build waits for (those that conflict with SHARE: writers)
WRITER_MODES: Final = sorted(m.value for m in LockMode.SHARE.conflicts_with())


@dataclass(frozen=True)
class LongTransaction:
    pid: int
    username: str | None
    application_name: str | None
    state: str | None
    seconds: float
    query: str | None

    def warning(self) -> str:
        query = " ".join((self.query or "").split())
        return (
            f"pid {self.pid} ({self.username or '?'}, {self.application_name or '-'}, "
            f"{self.state or '?'}) has had a transaction open for {self.seconds:.0f} s "
            f"(query: {query[:80]!r}): CREATE INDEX CONCURRENTLY waits for it to end"
        )


def long_transactions(
    conn: psycopg.Connection[Any], seconds: float, table_oids: list[int]
) -> list[LongTransaction]:
    """Other sessions' transactions older than ``seconds`` that a build would wait for."""
    params = {"seconds": seconds, "tables": table_oids, "modes": WRITER_MODES}
    return fetch(conn, LongTransaction, LONG_TRANSACTIONS_SQL, params)


def plan(ctx: StepContext) -> StepPlan:
    """The indexes still to build; never changes the database."""
    out = StepPlan(ID)
    building: list[int] = []
    for entry in survey(ctx):
        if isinstance(entry, Skip):
            out.skipped.append(entry)
            continue
        if _plan_one(out, entry):
            building.append(entry.wanted.table.oid)
    if building:
        found = long_transactions(ctx.conn, ctx.options.long_transaction_seconds, building)
        out.warnings += [t.warning() for t in found]
    return out


def _plan_one(out: StepPlan, found: Found) -> bool:
    """Add what ``found`` needs to ``out``; True when it plans a build."""
    wanted, existing = found.wanted, found.existing
    if existing is not None and found.present:
        out.present.append(wanted.object)
        if not found.as_wanted:
            out.warnings.append(
                f"{wanted.object} exists but is not the index the profile describes; it is: "
                f"{existing.definition}; pgrunbook would build: {wanted.create_sql}; "
                "pgrunbook leaves it as it is (drop it yourself to have it rebuilt)"
            )
        return False
    if existing is not None:  # INVALID (or not ready)
        if found.build is not None:
            out.skipped.append(
                Skip(
                    wanted.object,
                    f"being built by pid {found.build.pid} "
                    f"({found.build.phase or 'phase not visible'}); re-run when it ends",
                )
            )
            return False
        out.operations.append(wanted.drop_invalid_op(existing))
        out.operations.append(wanted.create_op())
        return True
    if found.twin is not None:
        if found.served_by_twin:
            out.skipped.append(
                Skip(
                    wanted.object,
                    f"equivalent index {found.twin.name} already serves this "
                    f"({found.twin.definition})",
                )
            )
            return False
        assert wanted.name == ROOM_HISTORY_INDEX
        out.warnings.append(
            f"index {found.twin.qualified} is equivalent to {wanted.name} "
            f"({found.twin.definition}); {wanted.name} is built anyway because the runbook's "
            f"check expects the room-history query to use it; {found.twin.name} is then a "
            "duplicate you may drop (pgrunbook does not touch it)"
        )
    out.operations.append(wanted.create_op())
    return True
