"""pg_cron: is it usable for this database, and its jobs (``cron.job``) and runs
(``cron.job_run_details``).

pg_cron's scheduler runs only when the library is in ``shared_preload_libraries``; its
``cron`` schema exists in one database per server, ``cron.database_name``. Jobs scheduled
there with ``cron.schedule`` run in that database; ``cron.schedule_in_database`` (pg_cron
1.4) schedules a job that runs in another database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import psycopg
from psycopg import errors, sql

from pgrunbook.rows import fetch
from pgrunbook.schedule.jobs import JOB_PREFIX, Job

PROBE_SQL: Final = """
SELECT current_database()::text AS database,
       current_setting('cron.database_name', true) AS cron_database,
       (SELECT default_version FROM pg_available_extensions WHERE name = 'pg_cron')
           AS available_version,
       (SELECT extversion FROM pg_extension WHERE extname = 'pg_cron') AS installed_version,
       to_regprocedure('cron.schedule_in_database(text,text,text,text,text,boolean)')
           IS NOT NULL AS in_database,
       to_regnamespace('cron') IS NULL OR has_schema_privilege('cron', 'USAGE') AS allowed
"""
CREATE_EXTENSION_SQL: Final = "CREATE EXTENSION IF NOT EXISTS pg_cron"
SCHEDULE_SQL: Final = sql.SQL("SELECT cron.schedule({name}, {schedule}, {command})")
SCHEDULE_IN_SQL: Final = sql.SQL(
    "SELECT cron.schedule_in_database({name}, {schedule}, {command}, {database})"
)
UNSCHEDULE_SQL: Final = sql.SQL("SELECT cron.unschedule({jobid})")

JOBS_SQL: Final = """
SELECT jobid, jobname::text AS name, schedule::text, command::text, active,
       database::text, username::text
  FROM cron.job
 WHERE starts_with(jobname, %(prefix)s) AND database = %(database)s
 ORDER BY jobname
"""
ELSEWHERE_SQL: Final = """
SELECT jobname::text, database::text
  FROM cron.job
 WHERE jobname = ANY(%(names)s) AND username = current_user AND database <> %(database)s
 ORDER BY 1
"""
LAST_RUNS_SQL: Final = """
SELECT DISTINCT ON (jobid) jobid, status::text, start_time, end_time,
       return_message::text
  FROM cron.job_run_details
 WHERE jobid = ANY(%(ids)s)
 ORDER BY jobid, runid DESC
"""

NEON_NOTE: Final = (
    "on Neon, enable pg_cron first: set cron.database_name to this database on the compute "
    "endpoint (console or API), then CREATE EXTENSION pg_cron; jobs run only while the "
    "compute is active (disable scale to zero)"
)

NOT_ALLOWED: Final = (
    "this role may not use pg_cron (a superuser can GRANT USAGE ON SCHEMA cron TO it)"
)


@dataclass(frozen=True)
class CronStatus:
    """What this server's pg_cron offers to ``database``."""

    database: str
    cron_database: str | None  # cron.database_name; None when the library is not loaded
    available_version: str | None  # pg_available_extensions; None when not installed
    installed_version: str | None  # in this database (pg_extension)
    in_database: bool  # cron.schedule_in_database exists (seen from this database)
    allowed: bool = True  # this role may use the cron schema (when it exists here)
    neon: bool = False

    @property
    def loaded(self) -> bool:
        return self.cron_database is not None

    @property
    def here(self) -> bool:
        """pg_cron's database is this one (jobs scheduled with cron.schedule run here)."""
        return self.cron_database == self.database

    def unusable(self) -> str | None:
        """Why pg_cron cannot run this database's jobs, or None (a different cron database
        is checked when connected to it: ``remote_unusable``)."""
        neon = f"; {NEON_NOTE}" if self.neon else ""
        if self.available_version is None:
            return f"pg_cron is not installed on this server (not in pg_available_extensions){neon}"
        if not self.loaded:
            return (
                f"pg_cron is not in shared_preload_libraries, so its scheduler is not running{neon}"
            )
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "cron_database": self.cron_database,
            "available_version": self.available_version,
            "installed_version": self.installed_version,
        }


def probe(conn: psycopg.Connection[Any], *, neon: bool = False) -> CronStatus:
    row = conn.execute(PROBE_SQL).fetchone()
    assert row is not None
    return CronStatus(
        database=row[0],
        cron_database=row[1] or None,
        available_version=row[2],
        installed_version=row[3],
        in_database=bool(row[4]),
        allowed=bool(row[5]),
        neon=neon,
    )


def remote_unusable(status: CronStatus, remote: CronStatus) -> str | None:
    """Why the cron database ``remote`` (connected to) cannot schedule ``status``'s jobs."""
    if remote.installed_version is None:
        return (
            f"pg_cron's database is {status.cron_database!r} (cron.database_name), not "
            f"{status.database!r}, and the extension is not created there"
        )
    if not remote.allowed:
        return NOT_ALLOWED
    if not remote.in_database:
        return (
            f"cron.database_name is {status.cron_database!r}, not {status.database!r}, and "
            f"pg_cron {remote.installed_version} has no cron.schedule_in_database (1.4 or "
            "later runs jobs in another database)"
        )
    return None


def create_extension(conn: psycopg.Connection[Any]) -> str | None:
    """CREATE EXTENSION pg_cron; None when done, else why not (e.g. not allowed)."""
    try:
        with conn.transaction():
            conn.execute(CREATE_EXTENSION_SQL)
    except (errors.InsufficientPrivilege, errors.FeatureNotSupported) as exc:
        return f"CREATE EXTENSION pg_cron failed: {exc.diag.message_primary or exc}"
    except errors.ObjectNotInPrerequisiteState as exc:
        return f"pg_cron cannot be created here: {exc.diag.message_primary or exc}"
    return None


def schedule_statement(job: Job, database: str | None) -> sql.Composed:
    """``cron.schedule`` (runs in pg_cron's database), or ``cron.schedule_in_database``
    when ``database`` is given. Either replaces a job of the same name (same user)."""
    values = {
        "name": sql.Literal(job.name),
        "schedule": sql.Literal(job.schedule),
        "command": sql.Literal(job.command),
    }
    if database is None:
        return SCHEDULE_SQL.format(**values)
    return SCHEDULE_IN_SQL.format(database=sql.Literal(database), **values)


def unschedule_statement(jobid: int) -> sql.Composed:
    return UNSCHEDULE_SQL.format(jobid=sql.Literal(jobid))


@dataclass(frozen=True)
class LastRun:
    jobid: int
    status: str
    start_time: datetime | None
    end_time: datetime | None
    return_message: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "start": self.start_time.isoformat() if self.start_time else None,
            "end": self.end_time.isoformat() if self.end_time else None,
            "return_message": self.return_message,
        }


@dataclass
class CronJob:
    jobid: int
    name: str
    schedule: str
    command: str
    active: bool
    database: str
    username: str
    last_run: LastRun | None = field(default=None)
    next_run: datetime | None = field(default=None)

    def to_json(self) -> dict[str, Any]:
        return {
            "jobid": self.jobid,
            "name": self.name,
            "schedule": self.schedule,
            "command": self.command,
            "active": self.active,
            "database": self.database,
            "username": self.username,
            "last_run": self.last_run.to_json() if self.last_run else None,
            "next_run": self.next_run.isoformat() if self.next_run else None,
        }


def elsewhere(
    conn: psycopg.Connection[Any], names: list[str], database: str
) -> list[tuple[str, str]]:
    """Jobs of these names that this role already has for another database (pg_cron names
    jobs per role, so scheduling them again would move them here)."""
    return [
        (str(r[0]), str(r[1]))
        for r in conn.execute(ELSEWHERE_SQL, {"names": names, "database": database})
    ]


def jobs(conn: psycopg.Connection[Any], database: str) -> list[CronJob]:
    """pgrunbook's jobs for ``database`` with their last runs (``conn``: pg_cron's database)."""
    found = fetch(conn, CronJob, JOBS_SQL, {"prefix": JOB_PREFIX, "database": database})
    if found:
        runs = fetch(conn, LastRun, LAST_RUNS_SQL, {"ids": [j.jobid for j in found]})
        by_id = {r.jobid: r for r in runs}
        for job in found:
            job.last_run = by_id.get(job.jobid)
    return found
