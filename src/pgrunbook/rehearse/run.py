"""Apply and verify the steps on the copy: per step its duration, the operations it ran,
the strongest lock they took, and the problems found (refusals, skips, warnings, failed
checks, errors); then the verify result.

Everything here runs on the copy only. On a scratch database (same server as the source)
the roles the rehearsal created are removed again afterwards: roles belong to the whole
server, not to the copy.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal

import psycopg

from pgrunbook.change import engine
from pgrunbook.change.journal import Journal, RunLock
from pgrunbook.change.lockmodes import LockMode
from pgrunbook.change.operation import Operation
from pgrunbook.change.refs import RefKind
from pgrunbook.change.runner import ApplyPolicy, apply_operations
from pgrunbook.change.step import Step, StepContext, StepOptions, Verification
from pgrunbook.dsn import ConnInfo, scrub
from pgrunbook.errors import PgRunbookError
from pgrunbook.profile.model import Profile
from pgrunbook.rehearse.neonbranch import neon_branch_copy
from pgrunbook.rehearse.scratch import DEFAULT_MAX_SIZE_MB, scratch_copy

Via = Literal["auto", "neon", "copy"]
ProblemKind = Literal["refused", "skipped", "warning", "check failed", "error"]
ROLES_STEP: Final = "roles"
_STRENGTH: Final = {mode: rank for rank, mode in enumerate(LockMode)}


@dataclass(frozen=True)
class Problem:
    kind: ProblemKind
    object: str
    text: str
    fix: str = ""  # for a refusal: the command or SQL that resolves it

    @property
    def blocking(self) -> bool:
        """Whether it makes the rehearsal fail (exit code 1)."""
        return self.kind in ("refused", "check failed", "error")

    def to_json(self) -> dict[str, str]:
        document = {"kind": self.kind, "object": self.object, "text": self.text}
        if self.fix:
            document["fix"] = self.fix
        return document


@dataclass
class StepOutcome:
    step: str
    seconds: float = 0.0
    operations: list[str] = field(default_factory=list)  # objects created or changed
    strongest: Operation | None = None  # the applied operation with the strongest lock
    problems: list[Problem] = field(default_factory=list)

    @property
    def lock(self) -> str:
        return self.strongest.lock if self.strongest is not None else "none"

    @property
    def lock_mode(self) -> LockMode | None:
        return self.strongest.lock_mode if self.strongest is not None else None

    def to_json(self) -> dict[str, Any]:
        mode = self.lock_mode
        return {
            "step": self.step,
            "seconds": round(self.seconds, 3),
            "operations": self.operations,
            "strongest_lock": mode.sql_name if mode is not None else None,
            "lock": self.lock,
            "problems": [p.to_json() for p in self.problems],
        }


@dataclass
class Rehearsal:
    copy: dict[str, Any]  # where it ran: kind, name, method or id, seconds
    kept: bool
    steps: list[StepOutcome] = field(default_factory=list)
    checks: list[Verification] = field(default_factory=list)
    verified: bool = False  # verify ran (it does not when apply stopped at an error)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def problems(self) -> list[Problem]:
        return [p for s in self.steps for p in s.problems]

    @property
    def clean(self) -> bool:
        return self.verified and not any(p.blocking for p in self.problems)

    @property
    def exit_code(self) -> int:
        return 0 if self.clean else 1

    def to_json(self) -> dict[str, Any]:
        return {
            "copy": self.copy,
            "kept": self.kept,
            "steps": [s.to_json() for s in self.steps],
            "verified": self.verified,
            "checks": [c.to_json() for c in self.checks],
            "passed": self.clean,
            "notes": self.notes,
            "seconds": round(self.seconds, 3),
        }


def strongest(operations: Sequence[Operation]) -> Operation | None:
    locking = [op for op in operations if op.lock_mode is not None]
    if not locking:
        return None
    return max(locking, key=lambda op: _STRENGTH[op.lock_mode])  # type: ignore[index]


def _error_text(exc: PgRunbookError | psycopg.Error, secrets: Sequence[str | None]) -> str:
    if isinstance(exc, PgRunbookError):
        text = exc.one_line()
    else:
        text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return scrub(text, *secrets)


def _run_step(
    ctx: StepContext, step: Step, policy: ApplyPolicy, secrets: list[str | None]
) -> tuple[StepOutcome, bool]:
    """Apply one step; the outcome, and False when it stopped at an error."""
    outcome = StepOutcome(step.id)
    started = time.monotonic()
    try:
        report = engine.apply_steps(ctx, [step], policy=policy)
    except (PgRunbookError, psycopg.Error) as exc:
        outcome.seconds = time.monotonic() - started
        outcome.problems.append(Problem("error", step.id, _error_text(exc, secrets)))
        return outcome, False
    outcome.seconds = time.monotonic() - started
    for run in report.runs:
        secrets.extend(run.plan.secrets.values())
        applied = [r.operation for r in run.results if r.skipped is None]
        outcome.operations = [op.object for op in applied]
        outcome.strongest = strongest(applied)
        outcome.problems += [
            Problem("refused", r.object, r.reason, r.fix) for r in run.plan.refused
        ]
        outcome.problems += [Problem("skipped", s.object, s.reason) for s in run.plan.skipped]
        outcome.problems += [
            Problem("skipped", r.operation.object, r.skipped)
            for r in run.results
            if r.skipped is not None
        ]
        outcome.problems += [Problem("warning", step.id, w) for w in run.plan.warnings]
    return outcome, True


def _journal_mark(conn: psycopg.Connection[Any]) -> int:
    """The newest journal entry id before the rehearsal (a TEMPLATE copy has the source's)."""
    entries = Journal(conn).latest()
    return max((e.id for e in entries), default=0)


def undo_rehearsed_roles(ctx: StepContext, since: int, policy: ApplyPolicy) -> list[str]:
    """Undo what the rehearsal's roles step did (journal entries after ``since``), newest
    first; the roles it created are dropped. Returns their names."""
    entries = [e for e in Journal(ctx.conn).in_force([ROLES_STEP]) if e.id > since]
    operations = [e.as_operation() for e in reversed(entries)]
    if not operations:
        return []
    with RunLock(ctx.conn):
        apply_operations(ctx.conn, operations, Journal(ctx.conn), action="rollback", policy=policy)
    return sorted(
        op.ref.name
        for op in operations
        if op.ref is not None
        and op.ref.kind is RefKind.ROLE
        and op.sql.lstrip().upper().startswith("CREATE ROLE")  # the journal keeps no ``creates``
    )


def rehearse_on(
    info: ConnInfo,
    profile: Profile,
    steps: Sequence[Step],
    result: Rehearsal,
    *,
    schema: str | None = None,
    options: StepOptions | None = None,
    policy: ApplyPolicy | None = None,
    shares_roles: bool = False,
    say: Callable[[str], None] = lambda text: None,
) -> None:
    """Apply then verify ``steps`` on the copy ``info``; fills ``result``."""
    policy = policy or ApplyPolicy()
    secrets: list[str | None] = [info.password]
    with engine.open_context(info, profile, schema=schema, options=options) as ctx:
        mark = _journal_mark(ctx.conn)
        try:
            ok = True
            for step in steps:
                say(f"rehearsing {step.id}")
                outcome, ok = _run_step(ctx, step, policy, secrets)
                result.steps.append(outcome)
                if not ok:
                    result.notes.append(f"apply stopped at {step.id}; verify was not run")
                    break
            if ok:
                say("verifying")
                try:
                    result.checks = engine.verify_steps(ctx, steps)
                except (PgRunbookError, psycopg.Error) as exc:
                    result.notes.append(f"verify failed: {_error_text(exc, secrets)}")
                    return
                result.verified = True
                for check in result.checks:
                    if not check.passed:
                        owner = next((s for s in result.steps if s.step == check.step), None)
                        if owner is not None:
                            owner.problems.append(Problem("check failed", check.step, check.name))
        finally:
            if shares_roles and any(s.id == ROLES_STEP for s in steps):
                _undo_roles(ctx, mark, policy, result, secrets)


def _undo_roles(
    ctx: StepContext,
    mark: int,
    policy: ApplyPolicy,
    result: Rehearsal,
    secrets: list[str | None],
) -> None:
    try:
        ctx.conn.rollback()  # autocommit: no-op unless a failed statement left a state
        dropped = undo_rehearsed_roles(ctx, mark, policy)
    except (PgRunbookError, psycopg.Error) as exc:
        result.notes.append(
            "could not remove the roles the rehearsal created on this server (roles are "
            f"server-wide): {_error_text(exc, secrets)}; drop them by hand before 'apply roles'"
        )
        return
    if dropped:
        result.notes.append(
            f"roles are server-wide: the rehearsal's roles ({', '.join(dropped)}) were "
            "dropped again, so 'apply roles' creates them with passwords you get"
        )


def rehearse(
    source: ConnInfo,
    profile: Profile,
    steps: Sequence[Step],
    *,
    via: Via = "auto",
    keep: bool = False,
    max_size_mb: int = DEFAULT_MAX_SIZE_MB,
    pg_bin: Path | None = None,
    project: str | None = None,
    parent: str | None = None,
    schema: str | None = None,
    options: StepOptions | None = None,
    policy: ApplyPolicy | None = None,
    now: datetime | None = None,
    say: Callable[[str], None] = lambda text: None,
) -> Rehearsal:
    """Copy ``source`` (a Neon branch on a Neon host or with ``via="neon"``, else a scratch
    database), rehearse ``steps`` there, remove the copy unless ``keep``. ``source`` itself
    is only read (its size and sessions; pg_dump for a dump copy)."""
    started = time.monotonic()
    schema = schema or source.schema
    use_neon = via == "neon" or (via == "auto" and source.is_neon)
    if use_neon:
        say("creating a Neon branch")
        with neon_branch_copy(project, parent=parent, keep=keep, now=now, note=say) as branch:
            result = Rehearsal(branch.to_json(), kept=keep)
            say(f"rehearsing on Neon branch {branch.name}")
            rehearse_on(
                branch.info,
                profile,
                steps,
                result,
                schema=schema,
                options=options,
                policy=policy,
                say=say,
            )
    else:
        say(f"copying {source.dbname} into a scratch database")
        with scratch_copy(
            source, keep=keep, max_size_mb=max_size_mb, pg_bin=pg_bin, now=now
        ) as scratch:
            result = Rehearsal(scratch.to_json(), kept=keep)
            say(f"rehearsing on scratch database {scratch.name} ({scratch.method} copy)")
            rehearse_on(
                scratch.info,
                profile,
                steps,
                result,
                schema=schema,
                options=options,
                policy=policy,
                shares_roles=True,
                say=say,
            )
    result.seconds = time.monotonic() - started
    return result
