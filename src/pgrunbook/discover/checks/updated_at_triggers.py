"""``updatedAt`` / ``updated_at`` columns that no trigger maintains.

Prisma's ``@updatedAt`` is set by the Prisma client, not by the database: a row updated by
raw SQL, a migration, a cleanup job or another service keeps its old timestamp. The
runbook's step 03 adds a ``BEFORE UPDATE ... FOR EACH ROW`` trigger (``trg_<table>_updated_at``
calling ``update_updated_at_camel()`` or ``update_updated_at_snake()``) to every such column.

A trigger counts as maintaining the column when it is an enabled BEFORE UPDATE row trigger
whose function's source mentions the column name, or is the runbook's function for that
naming. Works on the catalog snapshot alone (no query of its own).
"""

from __future__ import annotations

import re
from typing import Final

from pgrunbook.catalog import Column, Table, Trigger
from pgrunbook.discover.check import Check, CheckResult, NoThresholds
from pgrunbook.discover.context import Context
from pgrunbook.findings import Finding, Severity

# The column names we look for, each with the runbook's function that maintains it.
RUNBOOK_FUNCTIONS: Final[dict[str, str]] = {
    "updatedAt": "update_updated_at_camel",
    "updated_at": "update_updated_at_snake",
}
FIX: Final = "pgrunbook apply triggers"


def maintains(trigger: Trigger, column: str) -> bool:
    """Whether ``trigger`` (enabled or not) is a BEFORE UPDATE row trigger setting ``column``."""
    if not trigger.before_update_row:
        return False
    if trigger.function == RUNBOOK_FUNCTIONS[column]:
        return True
    # the name as a whole word: "updated_at" must not match "updated_at_utc"
    return re.search(rf"(?<!\w){re.escape(column)}(?!\w)", trigger.function_source) is not None


def _finding(table: Table, column: Column, disabled: list[Trigger]) -> Finding:
    if disabled:
        names = ", ".join(t.name for t in disabled)
        why = f"its trigger is disabled ({names})"
    else:
        why = "no trigger maintains it"
    return Finding(
        check=CHECK.id,
        severity=Severity.WARNING,
        object=table.qualified,
        message=f'column "{column.name}": {why}; rows updated outside the ORM keep a stale '
        "timestamp (Prisma sets @updatedAt only in its client)",
        details={
            "column": column.name,
            "type": column.type,
            "disabled_triggers": [t.name for t in disabled],
        },
        fix=FIX,
    )


def run(ctx: Context, limits: NoThresholds) -> CheckResult:
    findings = []
    checked = maintained = 0
    for table in ctx.catalog:
        if table.is_partition:  # judged on its partitioned parent, whose triggers it inherits
            continue
        for column in table.columns:
            if column.name not in RUNBOOK_FUNCTIONS:
                continue
            checked += 1
            setters = [t for t in table.triggers if maintains(t, column.name)]
            if any(t.is_enabled for t in setters):
                maintained += 1
                continue
            findings.append(_finding(table, column, setters))
    facts = {"columns": checked, "maintained": maintained, "unmaintained": len(findings)}
    return CheckResult(findings, facts)


CHECK = Check(
    id="updated_at_triggers",
    title="updatedAt columns no trigger maintains",
    run=run,
    thresholds=NoThresholds(),
)
