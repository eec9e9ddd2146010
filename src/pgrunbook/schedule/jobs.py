"""The schedule's cadences, their times, and the pg_cron jobs that carry them out.

Times are runbook section 8's, in UTC (pg_cron's default time zone): daily 03:00, weekly on
Sunday 04:00, monthly on the 1st 05:00, quarterly on the 1st of January, April, July and
October 06:00. Jobs run SQL only: the cleanups are procedures in the ``pgrunbook`` schema
(``functions.py``), the monthly VACUUM is a job of its own (VACUUM cannot run inside a
procedure or next to another statement), and the size snapshots are one INSERT each.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from psycopg import sql

from pgrunbook.catalog import Catalog
from pgrunbook.history import snapshot_statement
from pgrunbook.maintain.choose import HIGH_TRAFFIC
from pgrunbook.resolve import find_table

CADENCES: Final = ("daily", "weekly", "monthly", "quarterly")
JOB_PREFIX: Final = "pgrunbook-"
SNAPSHOT_SOURCE: Final = "pg_cron"
WEEKDAYS: Final = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")

VACUUM_SQL: Final = sql.SQL("VACUUM (ANALYZE) {tables}")
CALL_SQL: Final = sql.SQL("CALL {procedure}()")


@dataclass(frozen=True)
class When:
    """A time of day in UTC, optionally on one weekday (0 = Sunday) or one day of the
    month, optionally only in some months."""

    hour: int
    minute: int = 0
    weekday: int | None = None
    day: int | None = None
    months: tuple[int, ...] = ()

    @property
    def cron(self) -> str:
        """The cron expression (minute hour day month weekday)."""
        day = "*" if self.day is None else str(self.day)
        months = ",".join(map(str, self.months)) or "*"
        weekday = "*" if self.weekday is None else str(self.weekday)
        return f"{self.minute} {self.hour} {day} {months} {weekday}"

    @property
    def on_calendar(self) -> str:
        """The systemd ``OnCalendar=`` form."""
        weekday = "" if self.weekday is None else WEEKDAYS[self.weekday] + " "
        months = ",".join(f"{m:02d}" for m in self.months) or "*"
        day = "*" if self.day is None else f"{self.day:02d}"
        return f"{weekday}*-{months}-{day} {self.hour:02d}:{self.minute:02d}:00 UTC"


WHEN: Final[dict[str, When]] = {
    "daily": When(hour=3),
    "weekly": When(hour=4, weekday=0),
    "monthly": When(hour=5, day=1),
    "quarterly": When(hour=6, day=1, months=(1, 4, 7, 10)),
}


@dataclass(frozen=True)
class Job:
    """One pg_cron job: ``pgrunbook-<cadence>[-<part>]``, its schedule and SQL command."""

    name: str
    cadence: str
    schedule: str
    command: str
    does: str  # one line for people

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "cadence": self.cadence,
            "schedule": self.schedule,
            "command": self.command,
            "does": self.does,
        }


def job_name(cadence: str, part: str = "") -> str:
    return JOB_PREFIX + cadence + (f"-{part}" if part else "")


def cadence_procedure(cadence: str) -> sql.Identifier:
    """``pgrunbook.run_<cadence>``: the procedure the daily and weekly jobs CALL."""
    return sql.Identifier("pgrunbook", f"run_{cadence}")


def vacuum_tables(catalog: Catalog) -> list[sql.Identifier]:
    """The runbook's high-traffic tables found in this database (in its naming)."""
    found = (find_table(catalog, name) for name in HIGH_TRAFFIC)
    return [sql.Identifier(t.schema, t.name) for t in found if t is not None]


def build_jobs(
    catalog: Catalog, schema: str, cleanups: dict[str, str], *, when: dict[str, When] = WHEN
) -> list[Job]:
    """The jobs for ``schema``. ``cleanups`` maps each cadence that has a procedure
    ``pgrunbook.run_<cadence>()`` to what it does (daily and weekly always have one)."""
    jobs: list[Job] = []
    for cadence, does in cleanups.items():
        part = "" if cadence in ("daily", "weekly") else "cleanup"
        command = CALL_SQL.format(procedure=cadence_procedure(cadence)).as_string()
        jobs.append(Job(job_name(cadence, part), cadence, when[cadence].cron, command, does))
    tables = vacuum_tables(catalog)
    if tables:
        jobs.append(
            Job(
                job_name("monthly", "vacuum"),
                "monthly",
                when["monthly"].cron,
                VACUUM_SQL.format(tables=sql.SQL(", ").join(tables)).as_string(),
                "VACUUM (ANALYZE) of the high-traffic tables",
            )
        )
    for cadence, part in (("monthly", "snapshot"), ("quarterly", "snapshot")):
        jobs.append(
            Job(
                job_name(cadence, part),
                cadence,
                when[cadence].cron,
                snapshot_statement(schema, cadence, SNAPSHOT_SOURCE).as_string(),
                "size snapshot (pgrunbook.snapshots)",
            )
        )
    order = {c: i for i, c in enumerate(CADENCES)}
    return sorted(jobs, key=lambda j: (order[j.cadence], j.name))
