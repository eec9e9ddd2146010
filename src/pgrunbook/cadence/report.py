"""The report of one ``pgrunbook run``: a result per task, as data and as JSON.

Each task result keeps raw numbers in ``details`` (the JSON) and a ``Grid`` of formatted
cells that the terminal and Markdown renderers both print.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

Status = Literal["ran", "dry_run", "failed", "interrupted", "not_run"]
PROBLEMS: Final = ("failed", "interrupted")


@dataclass(frozen=True)
class Grid:
    """A table for people: column names and rows of formatted cells."""

    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass
class TaskResult:
    id: str
    title: str
    runbook: str  # the runbook line (section 8) the task implements
    status: Status = "ran"
    summary: str = ""
    grid: Grid | None = None
    sql: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "task": self.id,
            "title": self.title,
            "runbook": self.runbook,
            "status": self.status,
            "summary": self.summary,
            "error": self.error,
            "seconds": round(self.seconds, 3),
            "sql": self.sql,
            "notes": self.notes,
            "details": self.details,
        }


@dataclass
class RunReport:
    cadence: str
    database: str
    dsn: str  # masked: never a password
    schema: str
    started_at: datetime
    dry_run: bool
    tasks: list[TaskResult] = field(default_factory=list)
    snapshot_recorded: bool = False
    seconds: float = 0.0

    @property
    def problems(self) -> list[TaskResult]:
        """The tasks that failed or were interrupted."""
        return [t for t in self.tasks if t.status in PROBLEMS]

    @property
    def exit_code(self) -> int:
        return 1 if self.problems else 0

    def to_json(self) -> dict[str, Any]:
        return {
            "cadence": self.cadence,
            "database": self.database,
            "dsn": self.dsn,
            "schema": self.schema,
            "started_at": self.started_at.isoformat(),
            "dry_run": self.dry_run,
            "passed": not self.problems,
            "snapshot_recorded": self.snapshot_recorded,
            "seconds": round(self.seconds, 3),
            "tasks": [t.to_json() for t in self.tasks],
        }
