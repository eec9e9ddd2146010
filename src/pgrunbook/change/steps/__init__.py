"""The registry of runbook steps, in the runbook's order (scripts 02-06)."""

from __future__ import annotations

from typing import Final

from pgrunbook.change.step import Step
from pgrunbook.change.steps import audit, constraints, indexes, roles, triggers
from pgrunbook.errors import ConfigError

STEPS: Final[tuple[Step, ...]] = (
    indexes.STEP,
    triggers.STEP,
    audit.STEP,
    roles.STEP,
    constraints.STEP,
)

STEP_IDS: Final = tuple(s.id for s in STEPS)


def select(ids: tuple[str, ...] | list[str] = ()) -> list[Step]:
    """The named steps in runbook order (all of them when none is named)."""
    unknown = [i for i in ids if i not in STEP_IDS]
    if unknown:
        raise ConfigError(f"unknown step {unknown[0]!r}", f"steps are: {', '.join(STEP_IDS)}")
    return [s for s in STEPS if not ids or s.id in ids]
