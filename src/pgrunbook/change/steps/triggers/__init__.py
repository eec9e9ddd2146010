"""Runbook script 03: ``updatedAt`` / ``updated_at`` kept current by the database.

Prisma's ``@updatedAt`` is written by the Prisma client only; rows changed by raw SQL, jobs
or other services keep a stale timestamp. This step creates ``update_updated_at_camel()``
and ``update_updated_at_snake()`` in the schema and one ``trg_<table>_updated_at`` BEFORE
UPDATE row trigger on every table with such a column (any table of the schema, not only the
profile's).

- ``definitions``: the statements (shared by ``plan`` and ``export``);
- ``planning``: what this database needs, ``plan()``;
- ``checks``: ``verify()`` (the trigger exists and fires, in a non-UTC session);
- ``script``: ``export()``.
"""

from __future__ import annotations

from pgrunbook.change.step import Step
from pgrunbook.change.steps.triggers.checks import verify
from pgrunbook.change.steps.triggers.definitions import ID
from pgrunbook.change.steps.triggers.planning import plan
from pgrunbook.change.steps.triggers.script import export

STEP = Step(
    id=ID,
    number=3,
    script_name="03_updated_at_trigger",
    title="updatedAt triggers",
    plan=plan,
    verify=verify,
    export=export,
)

__all__ = ["ID", "STEP", "export", "plan", "verify"]
