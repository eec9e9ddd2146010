"""Runbook script 04: the audit log.

The audit table (``"AuditLog"`` with camelCase columns in a Prisma database,
``audit_logs`` with snake_case columns in a snake_case one), its lookup indexes, the
function ``audit_log(UUID, VARCHAR, VARCHAR, VARCHAR, JSONB, JSONB, JSONB, VARCHAR, TEXT)``
with exactly the signature the runbook's rollback drops, and (beyond the runbook) an
optional row-change trigger that records the old and new rows of the tables the user lists.

- ``target``: the audit table in this database, and what other steps use to write audit
  rows (``audit_table``, ``audit_insert_sql``, ``audit_rows_sql``);
- ``ddl``: every statement, built once for ``plan`` and ``export``;
- ``plan``, ``verify``, ``export``: the step's three functions.
"""

from __future__ import annotations

from pgrunbook.change.step import Step
from pgrunbook.change.steps.audit.export import export
from pgrunbook.change.steps.audit.plan import plan
from pgrunbook.change.steps.audit.target import (
    ID,
    AuditTarget,
    audit_insert_sql,
    audit_rows_sql,
    audit_table,
    audit_target,
)
from pgrunbook.change.steps.audit.verify import verify

STEP = Step(
    id=ID,
    number=4,
    script_name="04_audit_logs",
    title="Audit log",
    plan=plan,
    verify=verify,
    export=export,
)

__all__ = [
    "ID",
    "STEP",
    "AuditTarget",
    "audit_insert_sql",
    "audit_rows_sql",
    "audit_table",
    "audit_target",
    "export",
    "plan",
    "verify",
]
