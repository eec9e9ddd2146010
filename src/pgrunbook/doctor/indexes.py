"""Rebuilding invalid indexes: drop and recreate each one ``CONCURRENTLY`` (runbook 7).

A failed ``CREATE INDEX CONCURRENTLY`` (duplicates for a unique index, a lock or statement
timeout, a cancelled session) leaves an index marked invalid: the planner never uses it,
yet every write still maintains it. The runbook's cure is ``DROP INDEX CONCURRENTLY IF
EXISTS`` and running the creation again. Here the definition is recorded with
``pg_get_indexdef`` before the drop, so the index comes back exactly as it was (name,
columns, operator classes, predicate), and a rebuild that fails again leaves no invalid
index behind and reports the recorded definition, so nothing is lost.

An invalid index with a valid twin (same table, columns, operator classes, predicate and
method: what a failed ``REINDEX CONCURRENTLY`` leaves as ``<name>_ccnew``) is only dropped;
recreating it would make a duplicate. Builds still in progress are left alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

import psycopg
from psycopg import errors
from psycopg.rows import class_row

from pgrunbook.catalog import Index, Table, load_catalog
from pgrunbook.indexshape import valid_twin
from pgrunbook.indexsql import create_concurrently, current_builds, drop_concurrently
from pgrunbook.locking import LockBudgetExceeded, LockPolicy, with_lock_retries

# CONCURRENTLY statements wait for every older transaction and may scan a big table twice:
# a long statement timeout. Their lock (SHARE UPDATE EXCLUSIVE) does not block reads or
# writes, so a wait for it does not queue the application behind us; still bounded.
REPAIR_POLICY: Final = LockPolicy(lock_timeout_ms=2_000, statement_timeout_ms=3_600_000)

# The index of that name now: gone, valid, or (still) invalid, and which object it is.
INDEX_STATE_SQL: Final = """
SELECT i.indexrelid::int8 AS oid, i.indisvalid AS valid
  FROM pg_index i
  JOIN pg_class ic ON ic.oid = i.indexrelid
  JOIN pg_namespace n ON n.oid = ic.relnamespace
 WHERE n.nspname = %(schema)s AND ic.relname = %(name)s
"""

Action = Literal["rebuild", "drop"]
Status = Literal["planned", "rebuilt", "dropped", "failed", "skipped"]

# What a drop or a rebuild may run into, reported in one line: the data (duplicates for a
# unique index, a value an expression rejects), the definition (a function that raises,
# privileges), the server (timeouts, deadlock, limits). A lost connection is not among them.
REBUILD_ERRORS: Final = (
    psycopg.IntegrityError,
    psycopg.DataError,
    psycopg.ProgrammingError,  # InsufficientPrivilege, RaiseException, UndefinedFunction, ...
    psycopg.NotSupportedError,
    psycopg.InternalError,
    errors.QueryCanceled,  # statement timeout
    errors.DeadlockDetected,
    errors.ProgramLimitExceeded,  # index row too large
    errors.ObjectInUse,
)


@dataclass(frozen=True)
class InvalidIndex:
    oid: int
    schema: str
    name: str
    table: str
    definition: str  # pg_get_indexdef, recorded before anything is dropped
    valid_twin: str | None  # a valid index identical to this one: drop only

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def drop_sql(self) -> str:
        return drop_concurrently(self.schema, self.name).as_string() + ";"

    @property
    def create_sql(self) -> str | None:
        return None if self.valid_twin else create_concurrently(self.definition) + ";"


@dataclass
class Repair:
    """One invalid index and what was (or would be) done about it."""

    index: InvalidIndex
    status: Status = "planned"
    reason: str | None = None
    leftover: bool = False  # a failed rebuild's invalid index could not be dropped

    @property
    def action(self) -> Action:
        return "drop" if self.index.valid_twin else "rebuild"

    @property
    def object(self) -> str:
        return self.index.qualified

    @property
    def sql(self) -> list[str]:
        create = self.index.create_sql
        return [self.index.drop_sql, *([create] if create else [])]

    @property
    def fixed(self) -> bool:
        return self.status in ("rebuilt", "dropped")

    def to_json(self) -> dict[str, Any]:
        return {
            "object": self.object,
            "table": f"{self.index.schema}.{self.index.table}",
            "action": self.action,
            "status": self.status,
            "reason": self.reason,
            "definition": self.index.definition,
            "sql": self.sql,
            "leftover": self.leftover,
        }


@dataclass(frozen=True)
class _State:
    oid: int
    valid: bool


def _invalid(table: Table, index: Index) -> InvalidIndex:
    twin = valid_twin(index, table)
    return InvalidIndex(
        index.oid,
        index.schema,
        index.name,
        table.name,
        index.definition,
        twin.name if twin else None,
    )


def plan_repairs(conn: psycopg.Connection[Any], schema: str) -> list[Repair]:
    """One repair per invalid index of ``schema``, its definition recorded now.

    A build still in progress and an index of a partitioned table (it turns valid once
    every partition has its index attached) are skipped, not touched.
    """
    catalog = load_catalog(conn, schema)
    builds = current_builds(conn)
    repairs = []
    for table in catalog:
        for index in table.indexes:
            if index.valid:
                continue
            repair = Repair(_invalid(table, index))
            build = next((b for b in builds if b.builds(index)), None)
            if build is not None:
                repair.status = "skipped"
                command = build.command or "CREATE INDEX"
                repair.reason = f"a {command} is building it right now (pid {build.pid})"
            elif table.kind == "p":
                repair.status = "skipped"
                repair.reason = (
                    "partitioned index: create the missing partition's index and "
                    "ALTER INDEX ... ATTACH PARTITION"
                )
            repairs.append(repair)
    return repairs


def _state(conn: psycopg.Connection[Any], schema: str, name: str) -> _State | None:
    cur = conn.cursor(row_factory=class_row(_State))
    return cur.execute(INDEX_STATE_SQL, {"schema": schema, "name": name}).fetchone()


def _why(exc: psycopg.Error | LockBudgetExceeded) -> str:
    if isinstance(exc, LockBudgetExceeded):
        return exc.message
    primary = exc.diag.message_primary or str(exc).strip().splitlines()[0]
    detail = exc.diag.message_detail
    return " ".join(f"{primary} ({detail.rstrip('.')})".split()) if detail else primary


def apply_repairs(
    conn: psycopg.Connection[Any],
    repairs: list[Repair],
    *,
    policy: LockPolicy = REPAIR_POLICY,
    on_note: Callable[[str], None] = lambda text: None,
) -> list[Repair]:
    """Carry out the planned repairs on ``conn`` (autocommit, a direct session).

    Each statement runs under ``policy``'s lock timeout, retried with backoff. A repair
    whose index changed since it was planned (gone, valid again, another object of that
    name) is skipped. Returns ``repairs``, each with its final status.
    """
    if not conn.autocommit:
        raise ValueError("CONCURRENTLY statements need an autocommit connection")
    for repair in repairs:
        if repair.status == "planned":
            _apply_one(conn, repair, policy, on_note)
    return repairs


def _apply_one(
    conn: psycopg.Connection[Any],
    repair: Repair,
    policy: LockPolicy,
    on_note: Callable[[str], None],
) -> None:
    index = repair.index
    state = _state(conn, index.schema, index.name)
    if state is None or state.oid != index.oid or state.valid:
        repair.status = "skipped"
        repair.reason = (
            "it no longer exists"
            if state is None
            else "it is valid now"
            if state.valid
            else "another index of that name replaced it"
        )
        return

    def retry_note(what: str) -> Callable[[int, float], None]:
        return lambda attempt, delay: on_note(
            f"{what}: lock not free, retry {attempt} in {delay:.1f} s"
        )

    drop = drop_concurrently(index.schema, index.name)
    try:
        with_lock_retries(
            conn,
            lambda: conn.execute(drop),
            policy,
            what=f"dropping {index.qualified}",
            on_retry=retry_note(f"drop {index.qualified}"),
        )
    except (*REBUILD_ERRORS, LockBudgetExceeded) as exc:
        repair.status, repair.reason = "failed", f"could not drop it: {_why(exc)}"
        return
    if index.valid_twin:
        repair.status = "dropped"
        repair.reason = f"the valid index {index.valid_twin} is identical"
        return

    create = create_concurrently(index.definition)

    def attempt() -> bool:
        """True once built; False when a valid index of that name appeared meanwhile."""
        # A lock timeout in the middle of a concurrent build leaves an invalid index of
        # this name: drop it before trying again (never a valid one: someone built it).
        now = _state(conn, index.schema, index.name)
        if now is not None and now.valid:
            return False
        if now is not None:
            conn.execute(drop)
        conn.execute(create.encode())
        return True

    try:
        built = with_lock_retries(
            conn,
            attempt,
            policy,
            what=f"recreating {index.qualified}",
            on_retry=retry_note(f"create {index.qualified}"),
        )
    except (*REBUILD_ERRORS, LockBudgetExceeded) as exc:
        repair.status, repair.reason = "failed", _why(exc)
        _drop_leftover(conn, repair, policy)
        return
    repair.status = "rebuilt" if built else "skipped"
    if not built:
        repair.reason = "a valid index of that name was created meanwhile; left as it is"


def _drop_leftover(conn: psycopg.Connection[Any], repair: Repair, policy: LockPolicy) -> None:
    """After a failed rebuild: drop the invalid index it left, so none stays behind."""
    index = repair.index
    state = _state(conn, index.schema, index.name)
    if state is None or state.valid:
        return
    drop = drop_concurrently(index.schema, index.name)
    try:
        with_lock_retries(conn, lambda: conn.execute(drop), policy, what=f"dropping {index.name}")
    except (*REBUILD_ERRORS, LockBudgetExceeded) as exc:
        repair.leftover = True
        repair.reason = f"{repair.reason}; its invalid leftover is still there: {_why(exc)}"
