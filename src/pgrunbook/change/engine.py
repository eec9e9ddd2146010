"""Plan, apply, verify, roll back and report the state of runbook steps on one database.

The library behind ``pgrunbook plan/apply/verify/rollback/status``: each command is one
call here. ``apply`` re-plans every step just before running it (an earlier step may have
created what a later one grants on), holds the run lock for the whole run, and stops at the
first failure; ``rollback`` replays the journal's recorded inverses, newest first, so only
what pgrunbook created is ever undone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import psycopg

from pgrunbook.change.journal import Journal, JournalEntry, RunLock
from pgrunbook.change.operation import Operation
from pgrunbook.change.refs import RefKind
from pgrunbook.change.runner import ApplyPolicy, OperationResult, Report, apply_operations
from pgrunbook.change.step import Step, StepContext, StepOptions, StepPlan, Verification
from pgrunbook.change.steps import constraints
from pgrunbook.change.steps.constraints.fix import FixResult, fix_constraints
from pgrunbook.connect import connect
from pgrunbook.dsn import ConnInfo
from pgrunbook.errors import ConfigError
from pgrunbook.locking import LockPolicy
from pgrunbook.profile.model import Profile
from pgrunbook.serverinfo import probe

State = Literal["pending", "applied", "partial", "drifted"]


@contextmanager
def open_context(
    info: ConnInfo,
    profile: Profile,
    *,
    schema: str | None = None,
    options: StepOptions | None = None,
) -> Iterator[StepContext]:
    """An autocommit session on ``info`` (a direct endpoint) as the steps see it."""
    with connect(info, autocommit=True) as conn:
        server = probe(conn, info=info, schema=schema)
        name = server.schema.name
        if not server.schema.exists:
            raise ConfigError(
                f"schema {name!r} does not exist in database {server.database.name!r}",
                "pass --schema, or ?schema= in the URL, naming an existing schema",
            )
        yield StepContext(conn, name, server, profile, options or StepOptions(), info=info)


def plan_steps(ctx: StepContext, steps: Sequence[Step]) -> list[StepPlan]:
    """What each step would change now (read-only; later steps see today's catalog)."""
    ctx.refresh()
    return [step.plan(ctx) for step in steps]


@dataclass
class StepRun:
    plan: StepPlan
    results: list[OperationResult] = field(default_factory=list)

    @property
    def changed(self) -> int:
        return sum(1 for r in self.results if r.skipped is None)

    def to_json(self) -> dict[str, Any]:
        return {
            **self.plan.to_json(),
            "applied": [
                {
                    "object": r.operation.object,
                    "seconds": round(r.seconds, 3),
                    "tries": r.tries,
                    "waited_seconds": round(r.waited_seconds, 3),
                    "blockers": r.blockers,
                    "skipped": r.skipped,
                }
                for r in self.results
            ],
        }


@dataclass
class ApplyReport:
    runs: list[StepRun]
    dry_run: bool
    seconds: float = 0.0

    @property
    def changed(self) -> int:
        return sum(run.changed for run in self.runs)

    @property
    def refused(self) -> int:
        return sum(len(run.plan.refused) for run in self.runs)

    def generated_passwords(self) -> dict[str, str]:
        """The generated passwords of the roles this run created (role -> password)."""
        created = self.created_roles()
        return {
            role: password
            for run in self.runs
            for role, password in run.plan.secrets.items()
            if role in created
        }

    def created_roles(self) -> set[str]:
        """The roles this run created (the ones whose generated passwords are in use)."""
        return {
            r.operation.ref.name
            for run in self.runs
            for r in run.results
            if r.skipped is None
            and r.operation.ref is not None
            and r.operation.ref.kind is RefKind.ROLE
            and r.operation.creates
        }

    @property
    def exit_code(self) -> int:
        """1 when something the user asked for was refused (e.g. violated constraints)."""
        return 1 if self.refused else 0

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "steps": [run.to_json() for run in self.runs],
            "changed": self.changed,
            "refused": self.refused,
            "seconds": round(self.seconds, 3),
        }


def apply_steps(
    ctx: StepContext,
    steps: Sequence[Step],
    *,
    dry_run: bool = False,
    policy: ApplyPolicy | None = None,
    report: Report = lambda event, op, text: None,
    on_plan: Callable[[StepPlan], None] = lambda plan: None,
    sleep: Callable[[float], None] = time.sleep,
) -> ApplyReport:
    """Plan and run each step in order under the run lock; ``dry_run`` plans only.

    Raises OperationFailed / LockBudgetExceeded (one line) at the first operation that could
    not be done; what was done before it stays done and journaled.
    """
    started = time.monotonic()
    runs: list[StepRun] = []
    if dry_run:
        runs = [StepRun(plan) for plan in plan_steps(ctx, steps)]
        for run in runs:
            on_plan(run.plan)
        return ApplyReport(runs, dry_run=True, seconds=time.monotonic() - started)
    journal = Journal(ctx.conn)
    with RunLock(ctx.conn):
        journal.ensure()
        for step in steps:
            ctx.refresh()
            plan = step.plan(ctx)
            on_plan(plan)
            run = StepRun(plan)
            runs.append(run)
            run.results = apply_operations(
                ctx.conn, plan.operations, journal, policy=policy, report=report, sleep=sleep
            )
    ctx.refresh()  # callers (fix constraints, verify) see what was just made
    return ApplyReport(runs, dry_run=False, seconds=time.monotonic() - started)


def fix_and_apply_constraints(
    ctx: StepContext, names: Sequence[str] = (), *, policy: ApplyPolicy | None = None
) -> tuple[list[FixResult], ApplyReport]:
    """``pgrunbook fix constraints``: repair the rows that violate the constraints (each
    one's documented fix), then add and validate them, under one run lock."""
    policy = policy or ApplyPolicy()
    locks = LockPolicy(lock_timeout_ms=policy.lock_timeout_ms, budget_seconds=policy.budget_seconds)
    with RunLock(ctx.conn):
        fixes = fix_constraints(ctx, names, dry_run=False, policy=locks)
        report = apply_steps(ctx, [constraints.STEP], policy=policy)
    return fixes, report


@dataclass
class RollbackReport:
    operations: list[Operation]  # the applied operations being undone, newest first
    results: list[OperationResult]
    dry_run: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "operations": [op.reverse().to_json() for op in self.operations],
            "undone": len([r for r in self.results if r.skipped is None]),
        }


def _in_force(ctx: StepContext, steps: Sequence[Step]) -> list[Operation]:
    """The journaled operations in force for ``steps``, newest first."""
    entries = Journal(ctx.conn).in_force([s.id for s in steps])
    return [e.as_operation() for e in reversed(entries)]


def rollback_plan(ctx: StepContext, steps: Sequence[Step]) -> list[Operation]:
    """The operations rollback would undo (those with an inverse), newest first."""
    return [op for op in _in_force(ctx, steps) if op.reverse_sql is not None]


def rollback_steps(
    ctx: StepContext,
    steps: Sequence[Step],
    *,
    dry_run: bool = False,
    policy: ApplyPolicy | None = None,
    report: Report = lambda event, op, text: None,
    sleep: Callable[[float], None] = time.sleep,
) -> RollbackReport:
    """Undo what pgrunbook applied for ``steps`` (never anything it did not create)."""
    journal = Journal(ctx.conn)
    if dry_run:
        return RollbackReport(rollback_plan(ctx, steps), [], dry_run=True)
    with RunLock(ctx.conn):
        operations = _in_force(ctx, steps)
        results = apply_operations(
            ctx.conn,
            operations,
            journal,
            action="rollback",
            policy=policy,
            report=report,
            sleep=sleep,
        )
    undone = [op for op in operations if op.reverse_sql is not None]
    return RollbackReport(undone, results, dry_run=False)


def verify_steps(ctx: StepContext, steps: Sequence[Step]) -> list[Verification]:
    ctx.refresh()
    return [check for step in steps for check in step.verify(ctx)]


@dataclass
class StepStatus:
    step: str
    state: State
    pending: list[str]  # objects the step would still create or change
    present: int
    applied_by_pgrunbook: int  # operations in force in the journal
    drifted: list[str]  # objects pgrunbook made that were changed or dropped since
    interrupted: list[str]  # operations a run started and never finished
    refused: list[str]

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "state": self.state,
            "pending": self.pending,
            "present": self.present,
            "applied_by_pgrunbook": self.applied_by_pgrunbook,
            "drifted": self.drifted,
            "interrupted": self.interrupted,
            "refused": self.refused,
        }


def drifted_objects(conn: psycopg.Connection[Any], entries: Sequence[JournalEntry]) -> list[str]:
    """Objects whose definition no longer matches the fingerprint recorded when applied."""
    expected: dict[Any, tuple[str, str | None]] = {}
    for entry in sorted(entries, key=lambda e: e.id):
        ref = entry.as_operation().ref
        if ref is not None and entry.outcome == "done":
            expected[ref] = (entry.object, entry.fingerprint)
    out = []
    for ref, (obj, fingerprint) in expected.items():
        now = ref.fingerprint(conn)
        if now != fingerprint:
            how = "dropped" if now is None else "changed"
            out.append(f"{ref.kind.value} {ref.name} ({obj}): {how} outside pgrunbook")
    return out


def step_status(
    ctx: StepContext, step: Step, entries: Sequence[JournalEntry], plan: StepPlan
) -> StepStatus:
    mine = [e for e in entries if e.step == step.id]
    drifted = drifted_objects(ctx.conn, mine)
    interrupted = [e.object for e in mine if e.interrupted]
    pending = [op.object for op in plan.operations]
    refused = [r.object for r in plan.refused]
    outstanding = bool(pending or refused)
    state: State
    if drifted:
        state = "drifted"
    elif interrupted or (outstanding and (plan.present or mine)):
        state = "partial"
    elif outstanding:
        state = "pending"
    else:
        state = "applied"
    return StepStatus(
        step.id, state, pending, len(plan.present), len(mine), drifted, interrupted, refused
    )


def status(ctx: StepContext, steps: Sequence[Step]) -> list[StepStatus]:
    """Per step: pending, applied, partial (some done, or a run was interrupted) or drifted."""
    ctx.refresh()
    entries = Journal(ctx.conn).latest()
    in_force = [e for e in entries if e.in_force]
    return [step_status(ctx, step, in_force, step.plan(ctx)) for step in steps]
