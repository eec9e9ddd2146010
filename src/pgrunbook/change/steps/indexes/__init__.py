"""Runbook script 02: the profile's performance indexes, built with CREATE INDEX CONCURRENTLY.

- ``wanted``: each profile index in this database's names, the statements that build and
  drop it, and what the catalog already holds of it (same name, INVALID, an equivalent
  index under another name, a build in progress);
- ``plan``: the builds still needed, INVALID indexes rebuilt, long transactions reported;
- ``progress``: ``build_progress(conn, pid)`` for a progress bar;
- ``verify``: the indexes are valid and the room-history query uses its index;
- ``export``: ``02_performance_indexes.sql`` and its rollback script.
"""

from __future__ import annotations

from pgrunbook.change.step import Step
from pgrunbook.change.steps.indexes.export import export
from pgrunbook.change.steps.indexes.plan import plan
from pgrunbook.change.steps.indexes.progress import BuildProgress, build_progress
from pgrunbook.change.steps.indexes.verify import verify
from pgrunbook.change.steps.indexes.wanted import ID, ROOM_HISTORY_INDEX

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

__all__ = [
    "ID",
    "ROOM_HISTORY_INDEX",
    "STEP",
    "BuildProgress",
    "build_progress",
    "export",
    "plan",
    "verify",
]
