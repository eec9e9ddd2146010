"""``pgrunbook run daily|weekly|monthly|quarterly``: the runbook's maintenance schedule
(section 8) as tasks derived from the profile and the database, run, and reported."""

from pgrunbook.cadence.execute import run_cadence
from pgrunbook.cadence.markdown import render_markdown
from pgrunbook.cadence.report import Grid, RunReport, TaskResult
from pgrunbook.cadence.tasks import Cadence, Task, plan

__all__ = [
    "Cadence",
    "Grid",
    "RunReport",
    "Task",
    "TaskResult",
    "plan",
    "render_markdown",
    "run_cadence",
]
