"""One change: its SQL, whether it may run in a transaction, the lock it takes, its inverse.

An operation is data (alembic's ``ops`` style): the runner executes it, the journal stores
it (``to_record``/``from_record``), and ``reverse()`` gives the operation that undoes it,
with the lock and transaction needs of the inverse statement, which may differ (creating a
table takes no lock on an existing table; dropping it takes ACCESS EXCLUSIVE).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from pgrunbook.change.lockmodes import LockMode
from pgrunbook.change.refs import ObjectRef

Same = Literal["same"]


@dataclass(frozen=True)
class Operation:
    step: str  # the runbook step: indexes, triggers, audit, roles, constraints
    object: str  # what it creates or changes, e.g. "index public.idx_message_room_created_desc"
    sql: str  # as shown, exported and journaled
    reverse_sql: str | None  # the exact inverse; None when there is nothing to undo
    transactional: bool  # False for CONCURRENTLY statements: autocommit, never in a transaction
    lock_mode: LockMode | None = None  # the strongest table lock it takes
    table: tuple[str, str] | None = None  # (schema, name) of the table that lock is on
    why: str = ""
    # run before a retry: e.g. drop the INVALID index a failed concurrent build left
    cleanup_sql: str | None = None
    # the object whose definition the journal fingerprints after the operation (drift)
    ref: ObjectRef | None = None
    # True when the operation creates ``ref``: the runner skips it if ``ref`` appeared
    # meanwhile, so rollback never drops an object pgrunbook did not create
    creates: bool = False
    # what the inverse needs, when it differs from the forward statement
    reverse_transactional: bool | Same = "same"
    reverse_lock_mode: LockMode | Same | None = "same"
    # executed instead of ``sql`` when set: it holds a secret (a password verifier) that
    # ``sql`` shows masked; never journaled, printed or exported
    run_sql: str | None = field(default=None, repr=False)

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
    def concurrent(self) -> bool:
        """A ``CONCURRENTLY`` statement: autocommit, its own long statement timeout."""
        return not self.transactional and "CONCURRENTLY" in self.sql.upper()

    @property
    def executed_sql(self) -> str:
        return self.run_sql or self.sql

    @property
    def definition_hash(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()[:16]

    def reverse(self) -> Operation:
        """The operation that undoes this one (its inverse SQL, with the inverse's needs)."""
        if self.reverse_sql is None:
            raise ValueError(f"{self.object} has no inverse")
        transactional = (
            self.transactional
            if self.reverse_transactional == "same"
            else self.reverse_transactional
        )
        lock = self.lock_mode if self.reverse_lock_mode == "same" else self.reverse_lock_mode
        return replace(
            self,
            sql=self.reverse_sql,
            reverse_sql=self.sql,
            transactional=transactional,
            lock_mode=lock,
            reverse_transactional=self.transactional,
            reverse_lock_mode=self.lock_mode,
            why=f"undo {self.object}",
            cleanup_sql=None,
            creates=False,
            run_sql=None,
        )

    def to_json(self) -> dict[str, Any]:
        """The plan contract's operation (PRODUCT.md): never the secret ``run_sql``."""
        return {
            "object": self.object,
            "sql": self.sql,
            "transactional": self.transactional,
            "lock": self.lock,
            "reverse_sql": self.reverse_sql,
            "why": self.why,
        }

    def to_record(self) -> dict[str, Any]:
        """Everything needed to rebuild the operation from the journal (no secret)."""
        return {
            "step": self.step,
            "object": self.object,
            "sql": self.sql,
            "reverse_sql": self.reverse_sql,
            "transactional": self.transactional,
            "lock_mode": self.lock_mode.name if self.lock_mode else None,
            "table": list(self.table) if self.table else None,
            "why": self.why,
            "ref": self.ref.to_record() if self.ref else None,
            "reverse_transactional": self.reverse_transactional,
            "reverse_lock_mode": (
                self.reverse_lock_mode
                if self.reverse_lock_mode in ("same", None)
                else self.reverse_lock_mode.name  # type: ignore[union-attr]
            ),
        }

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> Operation:
        reverse_lock = data.get("reverse_lock_mode", "same")
        table = data.get("table")
        return cls(
            step=data["step"],
            object=data["object"],
            sql=data["sql"],
            reverse_sql=data.get("reverse_sql"),
            transactional=bool(data["transactional"]),
            lock_mode=LockMode[data["lock_mode"]] if data.get("lock_mode") else None,
            table=(table[0], table[1]) if table else None,
            why=data.get("why", ""),
            ref=ObjectRef.from_record(data["ref"]) if data.get("ref") else None,
            reverse_transactional=data.get("reverse_transactional", "same"),
            reverse_lock_mode=(
                reverse_lock if reverse_lock in ("same", None) else LockMode[reverse_lock]
            ),
        )
