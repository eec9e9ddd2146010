"""Runbook script 04: placeholder, being written (issue 4)."""

from __future__ import annotations

from pgrunbook.change.step import Script, Step, StepContext, StepPlan, Verification

ID = "audit"


def plan(ctx: StepContext) -> StepPlan:
    return StepPlan(ID)


def verify(ctx: StepContext) -> list[Verification]:
    return []


def export(ctx: StepContext) -> Script:
    return Script("-- not written yet\n", "-- not written yet\n")


STEP = Step(
    id=ID,
    number=4,
    script_name="04_audit_logs",
    title="Audit log",
    plan=plan,
    verify=verify,
    export=export,
)
