"""The runbook's section 5 for script 04, proven on the database: the audit table has its
columns, its indexes are valid, ``audit_log()`` has the runbook's signature and writes a
row, and every row-change trigger records old and new rows.

Writes happen in a transaction that is always rolled back, under a short lock timeout; the
rows updated to fire a trigger are picked with ``SKIP LOCKED`` so the app never waits on
them.
"""

from __future__ import annotations

import uuid
from contextlib import AbstractContextManager
from typing import Any, Final

import psycopg
from psycopg import errors, sql
from psycopg.types.json import Jsonb

from pgrunbook.catalog import Table
from pgrunbook.change.step import StepContext, Verification
from pgrunbook.change.steps.audit.ddl import INDEXES, audit_log, trigger_name
from pgrunbook.change.steps.audit.plan import (
    audited_tables,
    existing_function,
    is_row_change_trigger,
    serves,
)
from pgrunbook.change.steps.audit.target import COLUMN, ID, AuditTarget, audit_target, compatible
from pgrunbook.locking import timeouts
from pgrunbook.resolve import find_column

LOCK_TIMEOUT_MS: Final = 100  # never hold the app up for longer
STATEMENT_TIMEOUT_MS: Final = 10_000
ROWS_TRIED: Final = 5  # rows a trigger check tries (one may break a NOT VALID constraint)

IDENTITY_SQL: Final = """
SELECT pg_get_function_identity_arguments(%(oid)s::oid), %(oid)s::oid::regprocedure::text
"""
CALL_SQL: Final = sql.SQL(
    "SELECT {function}(%(user_id)s, %(action)s, %(entity_type)s, %(entity_id)s, "
    "%(old)s, %(new)s, %(metadata)s, %(ip)s, %(agent)s)"
)
# the row as written; createdAt is set, and (a timestamp without time zone, Prisma's
# DateTime) holds now() in UTC whatever the session's TimeZone
READ_BACK_SQL: Final = sql.SQL(
    "SELECT {user_id}, {action}, {entity_type}, {entity_id}, {old}, {new}, {metadata},"
    " {ip}, {agent}, {created} IS NOT NULL,"
    " CASE WHEN pg_typeof({created}) = 'timestamp without time zone'::regtype"
    "      THEN abs(extract(epoch FROM {created}::timestamp - (now() AT TIME ZONE 'UTC')))"
    "           < 0.01 END"
    "  FROM {table} WHERE {id} = %(id)s"
)
PICK_ROWS_SQL: Final = sql.SQL(
    "SELECT ctid::text FROM {table} LIMIT {limit} FOR UPDATE SKIP LOCKED"
)
# a no-op update that fires the row triggers; returns the row's id (NULL without one)
TOUCH_ROW_SQL: Final = sql.SQL(
    "UPDATE {table} AS t SET {column} = {column} WHERE ctid = %(ctid)s::tid"
    " RETURNING to_jsonb(t) ->> 'id'"
)
# the audit row the trigger wrote in this transaction
TRIGGER_ROW_SQL: Final = sql.SQL(
    "SELECT {entity_id}, {old} ->> 'id', {new} ->> 'id', {old} IS NOT NULL, {new} IS NOT NULL"
    "  FROM {table}"
    " WHERE {entity_type} = %(table)s AND {action} = 'UPDATE'"
    "   AND {metadata} ->> 'txid' = txid_current()::text"
)


def verify(ctx: StepContext) -> list[Verification]:
    target = audit_target(ctx)
    checks = [_columns(target), _indexes(target)]
    checks += _function(ctx, target)
    checks += [_trigger(ctx, target, table) for table in audited_tables(ctx, target, None)]
    return checks


def _columns(target: AuditTarget) -> Verification:
    name = "audit table columns"
    table = target.table
    if table is None:
        return Verification(ID, name, False, {"table": target.qualified, "exists": False})
    found = {}
    wrong = []
    for logical, physical in target.columns.items():
        col = None if logical in target.missing else table.column(physical)
        found[physical] = col.type if col else None
        if col is not None and not compatible(COLUMN[logical].kind, col.type):
            wrong.append(f"{physical}: {col.type}, expected {COLUMN[logical].type}")
    details = {"table": target.qualified, "columns": found,
               "missing": list(target.missing), "wrong_types": wrong}  # fmt: skip
    return Verification(ID, name, not target.missing and not wrong, details)


def _indexes(target: AuditTarget) -> Verification:
    name = "audit table indexes"
    table = target.table
    states: dict[str, str] = {}
    for spec in INDEXES:
        index_name = target.index_name(spec.suffix)
        if table is None:
            states[index_name] = "missing"
            continue
        mine = next((i for i in table.indexes if i.name == index_name), None)
        other = next((i for i in table.indexes if serves(table, i, target, spec)), None)
        if mine is not None:
            states[index_name] = "valid" if mine.valid else "invalid"
        elif other is not None:
            states[index_name] = f"served by {other.name}"
        else:
            states[index_name] = "missing"
    passed = all(s == "valid" or s.startswith("served by") for s in states.values())
    return Verification(ID, name, passed, {"table": target.qualified, "indexes": states})


def _function(ctx: StepContext, target: AuditTarget) -> list[Verification]:
    fn = audit_log(target)
    old = existing_function(ctx.conn, fn)
    if old is None:
        details = {"function": fn.regprocedure, "exists": False}
        return [Verification(ID, "audit_log() signature", False, details),
                Verification(ID, "audit_log() writes a row", False, details)]  # fmt: skip
    row = ctx.conn.execute(IDENTITY_SQL, {"oid": old.oid}).fetchone()
    assert row is not None
    signature = Verification(
        ID,
        "audit_log() signature",
        old.returns == "uuid",
        {
            "function": str(row[1]),
            "arguments": str(row[0]),
            "returns": old.returns,
            "config": old.config,
        },
    )
    return [signature, _writes(ctx, target)]


def _writes(ctx: StepContext, target: AuditTarget) -> Verification:
    """Call audit_log() in a rolled-back transaction and read the row back."""
    name = "audit_log() writes a row"
    sent: dict[str, Any] = {
        "user_id": uuid.uuid4(),
        "action": "pgrunbook.verify",
        "entity_type": "pgrunbook",
        "entity_id": "verify",
        "old": {"value": 1},
        "new": {"value": 2},
        "metadata": {"verify": True},
        "ip": "127.0.0.1",
        "agent": "pgrunbook verify",
    }
    params = {k: Jsonb(v) if isinstance(v, dict) else v for k, v in sent.items()}
    names = {k: target.column(c) for k, c in READ_BACK_COLUMNS.items()}
    read_back = READ_BACK_SQL.format(table=target.identifier, **names)
    try:
        with ctx.conn.transaction(force_rollback=True), _short(ctx.conn):
            got = ctx.conn.execute(CALL_SQL.format(function=audit_log(target).identifier),
                                   params).fetchone()  # fmt: skip
            row_id = got[0] if got else None
            back = ctx.conn.execute(read_back, {"id": row_id}).fetchone()
    except psycopg.Error as exc:
        return Verification(ID, name, False, {"error": _first_line(exc)})
    if back is None:
        return Verification(ID, name, False, {"id": str(row_id), "found": False})
    read = dict(zip([*sent, "created_at_set", "created_at_utc"], back, strict=True))
    differs = sorted(k for k in sent if read[k] != sent[k])
    # created_at_utc is NULL for a createdAt that is not a timestamp without time zone
    passed = not differs and read["created_at_set"] and read["created_at_utc"] is not False
    details = {"id": str(row_id), "differs": differs, "created_at_set": read["created_at_set"],
               "created_at_utc": read["created_at_utc"], "rolled_back": True}  # fmt: skip
    return Verification(ID, name, bool(passed), details)


READ_BACK_COLUMNS: Final = {
    "id": "id",
    "user_id": "userId",
    "action": "action",
    "entity_type": "entityType",
    "entity_id": "entityId",
    "old": "oldValues",
    "new": "newValues",
    "metadata": "metadata",
    "ip": "ipAddress",
    "agent": "userAgent",
    "created": "createdAt",
}


def _short(conn: psycopg.Connection[Any]) -> AbstractContextManager[None]:
    return timeouts(conn, lock_timeout_ms=LOCK_TIMEOUT_MS,
                    statement_timeout_ms=STATEMENT_TIMEOUT_MS)  # fmt: skip


def _first_line(exc: psycopg.Error) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _trigger(ctx: StepContext, target: AuditTarget, table: Table) -> Verification:
    """The trigger is there, enabled and pgrunbook's, and an UPDATE of a row (rolled back)
    leaves an audit row with the old and the new row."""
    name = f"row-change trigger on {table.name}"
    trg = trigger_name(table.name)
    existing = next((t for t in table.triggers if t.name == trg), None)
    details: dict[str, Any] = {"table": table.qualified, "trigger": trg}
    if existing is None or not is_row_change_trigger(existing, ctx.schema):
        details["exists"] = existing is not None
        return Verification(ID, name, False, details)
    if not existing.is_enabled:
        return Verification(ID, name, False, details | {"enabled": False})
    key = find_column(table, "id") or (table.columns[0] if table.columns else None)
    if key is None:
        return Verification(ID, name, False, details | {"error": "table has no columns"})
    try:
        with ctx.conn.transaction(force_rollback=True), _short(ctx.conn):
            result = _fire(ctx.conn, target, table, key.name)
    except psycopg.Error as exc:
        return Verification(ID, name, False, details | {"error": _first_line(exc)})
    if result is None:
        details |= {"exercised": False, "reason": "no row to update (empty, or all locked)"}
        return Verification(ID, name, True, details)
    row_id, audit = result
    details |= {"exercised": True, "rolled_back": True, "audit_row": audit is not None}
    if audit is None:
        return Verification(ID, name, False, details)
    entity_id, old_id, new_id, has_old, has_new = audit
    ids_match = row_id is None or entity_id == old_id == new_id == row_id
    details |= {"old_values": bool(has_old), "new_values": bool(has_new), "entity_id": entity_id}
    return Verification(ID, name, bool(has_old and has_new and ids_match), details)


def _fire(
    conn: psycopg.Connection[Any], target: AuditTarget, table: Table, column: str
) -> tuple[str | None, tuple[Any, ...] | None] | None:
    """Update one row to itself (trying a few: a row may break a NOT VALID constraint) and
    return its id and the audit row the trigger wrote; None when no row could be updated."""
    ident = sql.Identifier(table.schema, table.name)
    picked = conn.execute(PICK_ROWS_SQL.format(table=ident, limit=sql.Literal(ROWS_TRIED)))
    for (ctid,) in picked.fetchall():
        try:
            with conn.transaction():  # a savepoint: a failed try does not end the check
                touched = conn.execute(
                    TOUCH_ROW_SQL.format(table=ident, column=sql.Identifier(column)),
                    {"ctid": ctid},
                ).fetchone()
        except errors.IntegrityError:
            continue
        row_id = None if touched is None or touched[0] is None else str(touched[0])
        audit = conn.execute(
            TRIGGER_ROW_SQL.format(
                table=target.identifier,
                entity_id=target.column("entityId"),
                old=target.column("oldValues"),
                new=target.column("newValues"),
                entity_type=target.column("entityType"),
                action=target.column("action"),
                metadata=target.column("metadata"),
            ),
            {"table": table.name},
        ).fetchone()
        return row_id, audit
    return None
