"""One change: its SQL, whether it may run in a transaction, the lock it takes, its inverse."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from pgrunbook.change.lockmodes import LockMode


@dataclass(frozen=True)
class Operation:
    step: str  # the runbook step: indexes, triggers, audit, roles, constraints
    object: str  # what it creates or changes, e.g. "index public.idx_message_room_created_desc"
    sql: str
    reverse_sql: str | None  # the exact inverse; None when there is nothing to undo
    transactional: bool  # False for CONCURRENTLY statements: autocommit, never in a transaction
    lock_mode: LockMode | None = None  # the strongest table lock it takes
    table: tuple[str, str] | None = None  # (schema, name) of the table that lock is on
    why: str = ""
    # run before a retry: e.g. drop the INVALID index a failed concurrent build left
    cleanup_sql: str | None = None

    @property
    def lock(self) -> str:
        """The lock, for people: ``SHARE UPDATE EXCLUSIVE on public.Message``."""
        if self.lock_mode is None:
            return "none"
        where = f" on {self.table[0]}.{self.table[1]}" if self.table else ""
        return f"{self.lock_mode.sql_name}{where}"

    @property
    def blocks_app(self) -> bool:
        """Whether waiting for its lock would make the app's reads or writes queue."""
        if self.lock_mode is None:
            return False
        conflicts = self.lock_mode.conflicts_with()
        return LockMode.ROW_EXCLUSIVE in conflicts or LockMode.ACCESS_SHARE in conflicts

    @property
    def definition_hash(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()[:16]

    def to_json(self) -> dict[str, Any]:
        return {
            "object": self.object,
            "sql": self.sql,
            "transactional": self.transactional,
            "lock": self.lock,
            "reverse_sql": self.reverse_sql,
            "why": self.why,
        }
