"""Runbook script 06: the profile's CHECK constraints, added NOT VALID, then validated.

Each constraint is added ``NOT VALID`` (a brief ACCESS EXCLUSIVE lock, no scan) and then
validated by a separate statement (SHARE UPDATE EXCLUSIVE: reads and writes go on). Before
adding one, the rows that break it are counted: a NOT VALID constraint is still checked on
every new row version, so once it exists any UPDATE of a violating row fails, even one that
only sets ``updatedAt``. A violated constraint is therefore refused (count, samples, the
query listing the rows, and the fix: ``pgrunbook fix constraints --yes`` or by hand) unless
the user asks for ``--add-not-valid``; then it is added but not validated.

``fix.fix_constraints`` repairs the violating rows the profile's way, with the old rows
recorded in the audit log.
"""

from __future__ import annotations

from pgrunbook.catalog import Constraint
from pgrunbook.change.step import Refusal, Skip, Step, StepContext, StepPlan, Verification
from pgrunbook.change.steps.constraints.script import export
from pgrunbook.change.steps.constraints.statements import (
    ID,
    KIND_NAMES,
    Target,
    count,
    details,
    fix_hint,
    resolve,
    violations_reason,
)

__all__ = ["ID", "STEP", "export", "plan", "verify"]


def _plan_existing(ctx: StepContext, target: Target, existing: Constraint, out: StepPlan) -> None:
    """A constraint of that name is there: ours as wanted, to validate, or not ours to touch."""
    if existing.type != "c":
        kind = KIND_NAMES.get(existing.type, existing.type)
        out.refused.append(
            Refusal(
                target.object,
                f"a {kind} constraint named {target.name} already exists on "
                f"{target.table.qualified}; pgrunbook does not replace it",
                "rename that constraint, or remove this one from the profile",
                {
                    "constraint": target.name,
                    "table": target.table.qualified,
                    "definition": existing.definition,
                },
            )
        )
        return
    if existing.validated:
        out.present.append(target.object)
        return
    found = count(ctx, target, existing)
    if found.count == 0:
        out.operations.append(
            target.validate_operation(
                "it exists NOT VALID and no row violates it: validating checks the existing "
                "rows under SHARE UPDATE EXCLUSIVE (reads and writes go on)"
            )
        )
        return
    out.refused.append(
        Refusal(
            target.validate_object,
            violations_reason(target, found, exists=True),
            fix_hint(target, found),
            {**details(target, found), "definition": existing.definition},
        )
    )


def plan(ctx: StepContext) -> StepPlan:
    """What script 06 still needs here; counts violating rows, changes nothing."""
    out = StepPlan(ID)
    for spec in ctx.profile.constraints:
        target = resolve(ctx, spec)
        if isinstance(target, Skip):
            out.skipped.append(target)
            continue
        existing = target.existing()
        if existing is not None:
            _plan_existing(ctx, target, existing, out)
            continue
        found = count(ctx, target)
        if found.count == 0:
            out.operations += [target.add_operation(), target.validate_operation()]
            continue
        reason = violations_reason(target, found)
        if not ctx.options.add_not_valid:
            out.refused.append(
                Refusal(target.object, reason, fix_hint(target, found), details(target, found))
            )
            continue
        what = found.describe("rows")
        out.operations.append(
            target.add_operation(
                f"added NOT VALID although {what} violate it (--add-not-valid): new rows that "
                "break it are refused at once, and any UPDATE of the violating rows fails until "
                "they are fixed"
            )
        )
        out.refused.append(
            Refusal(
                target.validate_object,
                f"not validated: {reason}",
                fix_hint(target, found),
                details(target, found),
            )
        )
    return out


def verify(ctx: StepContext) -> list[Verification]:
    """Every profile constraint whose table and columns exist is a validated CHECK."""
    out = []
    for spec in ctx.profile.constraints:
        target = resolve(ctx, spec)
        if isinstance(target, Skip):
            continue
        existing = target.existing()
        is_check = existing is not None and existing.type == "c"
        out.append(
            Verification(
                ID,
                f"constraint {spec.name}",
                passed=is_check and existing is not None and existing.validated,
                details={
                    "table": target.table.qualified,
                    "definition": existing.definition if existing is not None else None,
                    "validated": bool(is_check and existing is not None and existing.validated),
                },
            )
        )
    return out


STEP = Step(
    id=ID,
    number=6,
    script_name="06_constraints_validation",
    title="CHECK constraints (NOT VALID, then VALIDATE)",
    plan=plan,
    verify=verify,
    export=export,
    # each ADD ... NOT VALID must commit (and release its ACCESS EXCLUSIVE lock) before the
    # validation scans the table: never one transaction around the whole script
    transactional_script=False,
)
