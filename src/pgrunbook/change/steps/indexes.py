"""Runbook script 02: placeholder, being written (issue 4)."""

from __future__ import annotations

from pgrunbook.change.step import Script, Step, StepContext, StepPlan, Verification

ID = "indexes"


def plan(ctx: StepContext) -> StepPlan:
    return StepPlan(ID)


def verify(ctx: StepContext) -> list[Verification]:
    return []


def export(ctx: StepContext) -> Script:
    return Script("-- not written yet\n", "-- not written yet\n")


STEP = Step(
    id=ID,
    number=2,
    script_name="02_performance_indexes",
    title="Performance indexes (CREATE INDEX CONCURRENTLY)",
    plan=plan,
    verify=verify,
    export=export,
    transactional_script=False,
)
