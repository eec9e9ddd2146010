"""Runbook script 05: placeholder, being written (issue 4)."""

from __future__ import annotations

from pgrunbook.change.step import Script, Step, StepContext, StepPlan, Verification

ID = "roles"


def plan(ctx: StepContext) -> StepPlan:
    return StepPlan(ID)


def verify(ctx: StepContext) -> list[Verification]:
    return []


def export(ctx: StepContext) -> Script:
    return Script("-- not written yet\n", "-- not written yet\n")


STEP = Step(
    id=ID,
    number=5,
    script_name="05_security_permissions",
    title="Roles and privileges",
    plan=plan,
    verify=verify,
    export=export,
)
