"""``verify`` for step 03: per table, one enabled ``trg_*_updated_at`` trigger, and it fires.

The proof that it fires: in a transaction that is always rolled back, with a session
``TimeZone`` that is not UTC, one row is set to ``updatedAt = '2000-01-01'``. A trigger that
always sets the column overwrites that with the current time: the UTC wall clock for a
``timestamp`` column (Prisma's ``DateTime``), ``now()`` for a ``timestamptz`` one. A value
still in 2000, or off by the zone's offset, fails. The trigger's ``now()`` is the
transaction's start time, so the value is compared with the same ``now()`` seen by the
statement (equal up to the column's precision).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

import psycopg
from psycopg import errors, sql

from pgrunbook.catalog import Column, Table, Trigger
from pgrunbook.change.step import StepContext, Verification
from pgrunbook.change.steps.triggers.definitions import ID, MODES, TIMESTAMPTZ_OID, Mode
from pgrunbook.change.steps.triggers.planning import candidate_columns
from pgrunbook.discover.checks.updated_at_triggers import maintains
from pgrunbook.locking import timeouts

RUNBOOK_NAME: Final = re.compile(r"^trg_.+_updated_at$")
TEST_ZONE: Final = "America/New_York"  # any zone whose offset from UTC is never zero
TEST_VALUE: Final = "2000-01-01"
TOLERANCE_SECONDS: Final = 2.0  # the value is exact up to rounding; a zone is hours off
LOCK_TIMEOUT_MS: Final = 100  # the test row lock: never wait behind the app
STATEMENT_TIMEOUT_MS: Final = 5_000

SET_ZONE: Final = sql.SQL("SET LOCAL TimeZone = {}").format(sql.Literal(TEST_ZONE))
PICK_ROW: Final = sql.SQL(
    "SELECT tableoid::int8, ctid::text FROM {table} LIMIT 1 FOR UPDATE SKIP LOCKED"
)
TOUCH_ROW: Final = sql.SQL(
    "UPDATE {table} SET {column} = {value} WHERE tableoid = %s::oid AND ctid = %s::tid\n"
    "RETURNING {column}::text, CAST(({expected}) AS {type})::text,\n"
    "          extract(epoch FROM {column} - ({expected}))::float8"
)
PRECISION: Final = re.compile(r"\((\d+)\)")

# what a test update can run into; the trigger is then judged on its presence only
CANNOT_TOUCH: Final = (
    psycopg.IntegrityError,  # a CHECK (even NOT VALID) or other constraint the row violates
    errors.RaiseException,  # another trigger refusing the update
    errors.InsufficientPrivilege,
    errors.LockNotAvailable,
    errors.QueryCanceled,
    errors.GeneratedAlways,
    errors.ReadOnlySqlTransaction,
)


@dataclass(frozen=True)
class Firing:
    fired: bool
    value: str | None = None  # the column after the test update
    expected: str | None = None
    offset_seconds: float | None = None
    note: str = ""


def column_type(column: Column) -> sql.Composable:
    """The column's type as SQL (``timestamp(3)``), to show the expected value as stored."""
    base = sql.SQL("timestamptz" if column.type_oid == TIMESTAMPTZ_OID else "timestamp")
    precision = PRECISION.search(column.type)
    if precision is None:
        return base
    return sql.SQL("{}({})").format(base, sql.Literal(int(precision.group(1))))


def touch_row(conn: psycopg.Connection[Any], table: Table, column: Column, mode: Mode) -> Firing:
    """Update one row's ``column`` to 2000-01-01 and read back what the triggers left.

    Rolled back whatever happens; the row lock is taken with SKIP LOCKED under a short
    lock timeout, so the app is never made to wait.
    """
    target = sql.Identifier(table.schema, table.name)
    try:
        with conn.transaction(force_rollback=True):
            conn.execute(SET_ZONE)
            with timeouts(conn, lock_timeout_ms=LOCK_TIMEOUT_MS,
                          statement_timeout_ms=STATEMENT_TIMEOUT_MS):  # fmt: skip
                row = conn.execute(PICK_ROW.format(table=target)).fetchone()
                if row is None:
                    return Firing(False, note="the table has no row free to update")
                touch = TOUCH_ROW.format(
                    table=target,
                    column=sql.Identifier(column.name),
                    value=sql.Literal(TEST_VALUE),
                    expected=mode.expected,
                    type=column_type(column),
                )
                seen = conn.execute(touch, (row[0], row[1])).fetchone()
    except CANNOT_TOUCH as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return Firing(False, note=f"the test update failed: {first}")
    if seen is None:  # row-level security hid it, or it went away between the statements
        return Firing(False, note="the test update changed no row")
    return Firing(True, value=seen[0], expected=seen[1], offset_seconds=seen[2])


def _runbook_triggers(table: Table) -> list[Trigger]:
    return [
        t
        for t in table.triggers
        if RUNBOOK_NAME.match(t.name) and t.is_enabled and t.before_update_row
    ]


def _pick_trigger(table: Table, columns: list[Column]) -> tuple[Trigger | None, str]:
    """The trigger to test, or None and why the table fails."""
    named = _runbook_triggers(table)
    if len(named) > 1:
        names = ", ".join(t.name for t in named)
        return None, f"more than one enabled trg_*_updated_at trigger: {names}"
    if named:
        return named[0], ""
    others = [t for t in table.triggers for c in columns if t.is_enabled and maintains(t, c.name)]
    if not others:
        return None, "no enabled trg_*_updated_at BEFORE UPDATE row trigger"
    return others[0], f"maintained by {others[0].name}, a trigger pgrunbook did not make"


def verify_table(ctx: StepContext, table: Table, columns: list[Column]) -> Verification:
    name = f"updated_at trigger {table.qualified}"
    trigger, note = _pick_trigger(table, columns)
    if trigger is None:
        missing = {"table": table.qualified, "column": columns[0].name, "note": note}
        return Verification(ID, name, False, missing)
    notes = [note] if note else []
    column = next((c for c in columns if maintains(trigger, c.name)), columns[0])
    firing = touch_row(ctx.conn, table, column, MODES[column.type_oid])
    details: dict[str, Any] = {
        "table": table.qualified,
        "column": column.name,
        "column_type": column.type,
        "trigger": trigger.name,
        "fired": firing.fired,
        "value": firing.value,
        "expected": firing.expected,
        "offset_seconds": firing.offset_seconds,
    }
    if not firing.fired:
        notes.append(f"not fired: {firing.note}; passed on the trigger's presence only")
        passed = True
    else:
        assert firing.offset_seconds is not None
        passed = abs(firing.offset_seconds) <= TOLERANCE_SECONDS
        if not passed:
            notes.append(
                f"an UPDATE setting {column.name} = '{TEST_VALUE}' in a {TEST_ZONE} session "
                f"left {firing.value}, not the current time {firing.expected}"
            )
    if notes:
        details["note"] = "; ".join(notes)
    return Verification(ID, name, passed, details)


def verify(ctx: StepContext) -> list[Verification]:
    """One check per table (not partition) with a timestamp/timestamptz updatedAt column."""
    out = []
    for table in ctx.catalog:
        if table.is_partition:
            continue
        columns = [c for c in candidate_columns(table) if c.type_oid in MODES]
        if columns:
            out.append(verify_table(ctx, table, columns))
    return out
