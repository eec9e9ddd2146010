"""The runbook's section 5 for script 02: the indexes exist and are valid, and the
room-history query uses ``idx_message_room_created_desc``. Read-only (no ANALYZE)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

from psycopg import errors, sql

from pgrunbook.change.step import StepContext, Verification
from pgrunbook.change.steps.indexes.wanted import ID, ROOM_HISTORY_INDEX, Found, survey
from pgrunbook.locking import timeouts
from pgrunbook.resolve import find_column

# The runbook's performance check, by logical name: the newest 50 messages of a room.
ROOM_HISTORY_SQL: Final = sql.SQL(
    "SELECT * FROM {messages} WHERE {room_id} = (SELECT {id} FROM {rooms} LIMIT 1) "
    "ORDER BY {created_at} DESC LIMIT 50"
)
EXPLAIN_SQL: Final = sql.SQL("EXPLAIN (FORMAT JSON) {}")
EXPLAIN_LOCK_TIMEOUT_MS: Final = 5_000
EXPLAIN_STATEMENT_TIMEOUT_MS: Final = 30_000


def verify(ctx: StepContext) -> list[Verification]:
    """One check per profile index whose table and columns exist, plus the EXPLAIN check."""
    found = [entry for entry in survey(ctx) if isinstance(entry, Found)]
    checks = [index_check(entry) for entry in found]
    room_history = next((f for f in found if f.wanted.name == ROOM_HISTORY_INDEX), None)
    if room_history is not None:
        check = room_history_check(ctx, room_history)
        if check is not None:
            checks.append(check)
    return checks


def index_check(found: Found) -> Verification:
    wanted, existing = found.wanted, found.existing
    name = f"index {wanted.name} exists and is valid"
    details: dict[str, Any] = {"index": wanted.name, "table": wanted.table.qualified}
    if existing is not None:
        details |= {
            "definition": existing.definition,
            "valid": existing.valid,
            "bytes": existing.bytes,
            "as_profile": found.as_wanted,
        }
        if not found.as_wanted:
            details["profile_definition"] = wanted.create_sql
        if found.build is not None:
            details["being_built_by_pid"] = found.build.pid
        return Verification(ID, name, found.present, details)
    if found.served_by_twin and found.twin is not None:
        details |= {
            "served_by": found.twin.name,
            "definition": found.twin.definition,
            "valid": True,
            "bytes": found.twin.bytes,
        }
        return Verification(ID, name, True, details)
    details |= {"definition": None, "valid": False, "profile_definition": wanted.create_sql}
    return Verification(ID, name, False, details)


def room_history_check(ctx: StepContext, found: Found) -> Verification | None:
    """``EXPLAIN`` the runbook's room-history query in this database's names; None when
    the tables it reads are not there."""
    messages = found.wanted.table
    rooms = ctx.table("Room")
    room_id = find_column(messages, "roomId")
    created_at = find_column(messages, "createdAt")
    room_key = find_column(rooms, "id") if rooms is not None else None
    if rooms is None or room_id is None or created_at is None or room_key is None:
        return None
    query = ROOM_HISTORY_SQL.format(
        messages=sql.Identifier(messages.schema, messages.name),
        room_id=sql.Identifier(room_id.name),
        id=sql.Identifier(room_key.name),
        rooms=sql.Identifier(rooms.schema, rooms.name),
        created_at=sql.Identifier(created_at.name),
    )
    name = f"room history uses {ROOM_HISTORY_INDEX}"
    details: dict[str, Any] = {"query": query.as_string(), "expected": ROOM_HISTORY_INDEX}
    try:
        with timeouts(ctx.conn, lock_timeout_ms=EXPLAIN_LOCK_TIMEOUT_MS,
                      statement_timeout_ms=EXPLAIN_STATEMENT_TIMEOUT_MS):  # fmt: skip
            row = ctx.conn.execute(EXPLAIN_SQL.format(query)).fetchone()
    except (errors.LockNotAvailable, errors.QueryCanceled) as exc:
        details["error"] = str(exc).strip().splitlines()[0]
        return Verification(ID, name, False, details)
    assert row is not None
    plan = row[0][0]["Plan"]
    used = sorted(set(used_indexes(plan)))
    details["uses"] = used
    return Verification(ID, name, ROOM_HISTORY_INDEX in used, details)


def _nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)


def used_indexes(plan: dict[str, Any]) -> list[str]:
    """The indexes an EXPLAIN (FORMAT JSON) plan reads, in plan order."""
    return [str(n["Index Name"]) for n in _nodes(plan) if "Index Name" in n]
