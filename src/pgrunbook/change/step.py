"""A runbook step (scripts 02-06): what it plans for this database, verifies and exports.

A step is data plus three functions, found through the typed registry in
``change/steps/__init__.py``:

- ``plan(ctx) -> StepPlan``: inspect the catalog and return the operations still needed
  (objects already there are listed as ``present``; objects the profile expects whose table
  or column is missing are ``skipped`` with the reason; objects the step will not touch
  without the user's say-so, e.g. a constraint the data violates, are ``refused``);
- ``verify(ctx) -> list[Verification]``: the runbook's section 5 checks for the step;
- ``export(ctx) -> Script``: the psql script (idempotent, runnable with ``\\i``) and its
  rollback script, rendered from the same definitions as ``plan``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import psycopg
from psycopg import errors

from pgrunbook.catalog import Catalog, Table, load_catalog
from pgrunbook.change.operation import Operation
from pgrunbook.dsn import ConnInfo
from pgrunbook.errors import PgRunbookError
from pgrunbook.locking import timeouts
from pgrunbook.profile.model import Profile
from pgrunbook.resolve import find_table
from pgrunbook.serverinfo import ServerInfo

CATALOG_LOCK_TIMEOUT_MS: Final = 5_000
CATALOG_STATEMENT_TIMEOUT_MS: Final = 120_000


@dataclass(frozen=True)
class StepOptions:
    """What the user chose on the command line (or the library caller passed)."""

    add_not_valid: bool = False  # constraints: add violated constraints NOT VALID anyway
    # audit: the tables that get the row-change trigger (None: the profile's list)
    audit_tables: tuple[str, ...] | None = None
    passwords_file: Path | None = None  # roles: where apply writes the generated passwords
    long_transaction_seconds: float = 60.0  # indexes: report transactions older than this


@dataclass
class StepContext:
    """One database as the steps see it: an autocommit session on the direct endpoint."""

    conn: psycopg.Connection[Any]
    schema: str
    server: ServerInfo
    profile: Profile
    options: StepOptions = field(default_factory=StepOptions)
    # the endpoint ``conn`` came from, for work that needs a second session (progress of a
    # concurrent build); None when the caller passed a bare connection
    info: ConnInfo | None = None
    catalog: Catalog = field(init=False)

    def __post_init__(self) -> None:
        self.refresh()

    def refresh(self) -> None:
        """Read the catalog again (after a step changed it).

        Reading sizes waits behind an exclusive lock, so the read gives up after a few seconds
        instead of hanging (and saying nothing) behind someone's ``VACUUM FULL``.
        """
        try:
            with timeouts(self.conn, lock_timeout_ms=CATALOG_LOCK_TIMEOUT_MS,
                          statement_timeout_ms=CATALOG_STATEMENT_TIMEOUT_MS):  # fmt: skip
                self.catalog = load_catalog(self.conn, self.schema)
        except errors.LockNotAvailable:
            raise PgRunbookError(
                f"a table in schema {self.schema!r} is locked exclusively, so its catalog "
                "cannot be read",
                "find the session with 'pgrunbook monitor' and try again when it ends",
            ) from None

    def table(self, logical: str) -> Table | None:
        """The profile's table name (``Wallet``) in this database's naming, if it exists."""
        return find_table(self.catalog, logical)


@dataclass(frozen=True)
class Skip:
    """An object the profile expects that this database cannot have (no table or column)."""

    object: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"object": self.object, "reason": self.reason}


@dataclass(frozen=True)
class Refusal:
    """An object the step will not create without the user's say-so, and why."""

    object: str
    reason: str  # one sentence: what is wrong and what adding it anyway would do
    fix: str  # the command or SQL that resolves it
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"object": self.object, "reason": self.reason, "fix": self.fix,
                "details": self.details}  # fmt: skip


@dataclass
class StepPlan:
    step: str
    operations: list[Operation] = field(default_factory=list)
    present: list[str] = field(default_factory=list)  # objects already as wanted
    skipped: list[Skip] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # e.g. long transactions a build waits for
    # roles: generated passwords by role name; never in JSON, logs or the journal
    secrets: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def changes(self) -> bool:
        return bool(self.operations)

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "operations": [op.to_json() for op in self.operations],
            "present": self.present,
            "skipped": [s.to_json() for s in self.skipped],
            "refused": [r.to_json() for r in self.refused],
            "warnings": self.warnings,
        }


@dataclass(frozen=True)
class Verification:
    """One line of the verification checklist (PRODUCT.md's ``verify`` contract)."""

    step: str
    name: str
    passed: bool
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step, "name": self.name, "passed": self.passed,
                "details": self.details}  # fmt: skip


@dataclass(frozen=True)
class Script:
    """A step's psql scripts: ``forward`` for ``\\i``, ``rollback`` to undo it."""

    forward: str
    rollback: str


@dataclass(frozen=True)
class Step:
    id: str  # indexes, triggers, audit, roles, constraints
    number: int  # the runbook's script number (2-6)
    script_name: str  # "02_performance_indexes"
    title: str
    plan: Callable[[StepContext], StepPlan]
    verify: Callable[[StepContext], list[Verification]]
    export: Callable[[StepContext], Script]
    # False for steps whose script must run outside a transaction (CONCURRENTLY)
    transactional_script: bool = True
