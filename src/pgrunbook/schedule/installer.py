"""``schedule install / show / remove``: routines in the ``pgrunbook`` schema, jobs in pg_cron.

Install is idempotent: routines are ``CREATE OR REPLACE``d, jobs are scheduled by name
(pg_cron replaces a job of the same name), and pgrunbook's routines and jobs that the
current plan no longer has are removed. When pg_cron cannot run this database's jobs, the
result is the fallback (crontab lines and systemd timers) with the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final

import psycopg

from pgrunbook.catalog import load_catalog
from pgrunbook.cleanup import PolicySkip, resolve_policies
from pgrunbook.cleanup.batches import DEFAULT_BATCH_SIZE, RUNS_SQL
from pgrunbook.connect import connect
from pgrunbook.dsn import ConnInfo
from pgrunbook.errors import ConfigError, PgRunbookError
from pgrunbook.history import TABLE_SQL as SNAPSHOTS_SQL
from pgrunbook.profile.model import Profile
from pgrunbook.schedule import cron, functions
from pgrunbook.schedule.cron import CronJob, CronStatus
from pgrunbook.schedule.fallback import Fallback
from pgrunbook.schedule.functions import Routine
from pgrunbook.schedule.jobs import CADENCES, WHEN, Job, When, build_jobs
from pgrunbook.schedule.nextrun import next_run

ALWAYS: Final = ("daily", "weekly")  # cadences that always have a run_<cadence>() procedure


@dataclass(frozen=True)
class Statement:
    database: str
    sql: str


@dataclass
class Plan:
    """What install creates for ``schema``: routines, then jobs."""

    schema: str
    routines: list[Routine]
    jobs: list[Job]
    skipped: list[PolicySkip] = field(default_factory=list)

    def setup(self) -> list[str]:
        """The SQL that creates the routines (and the tables they write to)."""
        texts = [RUNS_SQL.strip().rstrip(";"), SNAPSHOTS_SQL.strip().rstrip(";")]
        return texts + [s.as_string() for r in self.routines for s in r.statements()]


def plan(
    conn: psycopg.Connection[Any],
    schema: str,
    profile: Profile,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    when: dict[str, When] = WHEN,
) -> Plan:
    """The routines and jobs for this database's tables and the profile's retention."""
    catalog = load_catalog(conn, schema)
    resolved, skipped = resolve_policies(catalog, profile.retention)
    by_cadence: dict[str, list[Routine]] = {c: [] for c in CADENCES}
    for policy in resolved:
        if policy.policy.cadence not in by_cadence:
            skipped.append(
                PolicySkip(
                    policy.name,
                    f"cadence {policy.policy.cadence!r} is not one of {', '.join(CADENCES)}",
                )
            )
            continue
        by_cadence[policy.policy.cadence].append(functions.cleanup_routine(policy, batch_size))
    routines: list[Routine] = []
    cleanups: dict[str, str] = {}
    for cadence, policies in by_cadence.items():
        if not policies and cadence not in ALWAYS:
            continue
        runner = functions.cadence_routine(cadence, policies, analyze=cadence == "weekly")
        routines += [*policies, runner]
        cleanups[cadence] = runner.does
    return Plan(schema, routines, build_jobs(catalog, schema, cleanups, when=when), skipped)


@contextmanager
def cron_connection(
    conn: psycopg.Connection[Any], info: ConnInfo, status: CronStatus
) -> Iterator[tuple[psycopg.Connection[Any] | None, str | None]]:
    """A connection to pg_cron's database (``conn`` itself when it is this one), or None
    and why pg_cron cannot schedule this database's jobs."""
    reason = status.unusable()
    if reason is not None or status.cron_database is None:
        yield None, reason
        return
    if status.here:
        yield conn, None
        return
    neon = f"; {cron.NEON_NOTE}" if status.neon else ""
    try:
        other = connect(info.with_params(dbname=status.cron_database), autocommit=True)
    except PgRunbookError as exc:
        where = f"pg_cron's database {status.cron_database!r} (cron.database_name)"
        yield None, f"cannot connect to {where}: {exc.one_line()}{neon}"
        return
    with other:
        reason = cron.remote_unusable(status, cron.probe(other))
        yield other, None if reason is None else reason + neon


@dataclass
class Installed:
    """The outcome of ``install``: pg_cron jobs, or the fallback (and why)."""

    status: CronStatus
    plan: Plan
    statements: list[Statement] = field(default_factory=list)
    jobs: list[CronJob] = field(default_factory=list)
    unscheduled: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    fallback: Fallback | None = None
    dry_run: bool = False

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "pg_cron": self.status.to_json(),
            "dry_run": self.dry_run,
            "skipped": [{"policy": s.policy, "reason": s.reason} for s in self.plan.skipped],
        }
        if self.fallback is not None:
            document["fallback"] = self.fallback.to_json()
            return document
        document["routines"] = [r.to_json() for r in self.plan.routines]
        if self.dry_run:
            document["jobs"] = [j.to_json() for j in self.plan.jobs]
            document["sql"] = [{"database": s.database, "sql": s.sql} for s in self.statements]
        else:
            document["jobs"] = [j.to_json() for j in self.jobs]
            document["unscheduled"] = self.unscheduled
            document["dropped"] = self.dropped
        return document


def install(
    conn: psycopg.Connection[Any],
    info: ConnInfo,
    the_plan: Plan,
    *,
    dry_run: bool = False,
    fallback_for: Callable[[str], Fallback],
    neon: bool = False,
) -> Installed:
    """Create the routines and schedule the jobs (``dry_run``: only the SQL).

    ``fallback_for(reason)`` builds the fallback when pg_cron cannot be used.
    """
    status = cron.probe(conn, neon=neon)
    result = Installed(status, the_plan, dry_run=dry_run)
    here = status.database
    creating = status.unusable() is None and status.here and status.installed_version is None
    if creating and not dry_run:
        why = cron.create_extension(conn)
        if why is not None:
            result.fallback = fallback_for(why)
            return result
        status = result.status = cron.probe(conn, neon=neon)
    with cron_connection(conn, info, status) as (cron_conn, reason):
        if cron_conn is None or reason is not None:
            result.fallback = fallback_for(reason or "pg_cron is not usable")
            return result
        existing: list[CronJob] = []
        if creating and dry_run:  # no cron.job table yet
            result.statements.append(Statement(here, cron.CREATE_EXTENSION_SQL))
        else:
            _refuse_jobs_elsewhere(cron_conn, the_plan, here)
            existing = cron.jobs(cron_conn, here)
        in_database = None if status.here else here
        cron_db = status.cron_database or here
        wanted = {j.name for j in the_plan.jobs}
        stale_jobs = [j for j in existing if j.name not in wanted]
        planned = {r.name for r in the_plan.routines}
        stale_routines = [n for n in functions.installed_routines(conn) if n not in planned]
        result.statements += [Statement(here, text) for text in the_plan.setup()]
        schedule = [cron.schedule_statement(j, in_database) for j in the_plan.jobs]
        unschedule = [cron.unschedule_statement(j.jobid) for j in stale_jobs]
        drops = [functions.drop_statement(n) for n in stale_routines]
        result.statements += [Statement(cron_db, s.as_string()) for s in schedule + unschedule]
        result.statements += [Statement(here, s.as_string()) for s in drops]
        if dry_run:
            return result
        with conn.transaction():
            for text in the_plan.setup():
                conn.execute(text.encode())
        for statement in schedule + unschedule:
            cron_conn.execute(statement)
        with conn.transaction():
            for statement in drops:
                conn.execute(statement)
        result.unscheduled = [j.name for j in stale_jobs]
        result.dropped = stale_routines
        result.jobs = with_next_runs(cron.jobs(cron_conn, here))
    return result


def _refuse_jobs_elsewhere(
    cron_conn: psycopg.Connection[Any], the_plan: Plan, database: str
) -> None:
    """pg_cron names jobs per role: scheduling a name this role uses for another database
    would move that database's job here."""
    taken = cron.elsewhere(cron_conn, [j.name for j in the_plan.jobs], database)
    if taken:
        name, other = taken[0]
        raise ConfigError(
            f"this role's pg_cron job {name!r} runs pgrunbook's schedule in database "
            f"{other!r}; pg_cron names jobs per role, so installing here would move it",
            "remove it there first (pgrunbook schedule remove with that database's URL), "
            "or install as another role",
        )


def with_next_runs(found: list[CronJob]) -> list[CronJob]:
    for job in found:
        job.next_run = next_run(job.schedule) if job.active else None
    return found


@dataclass
class Shown:
    status: CronStatus
    jobs: list[CronJob]
    routines: list[str]
    note: str | None  # why there are no jobs to show

    def to_json(self) -> dict[str, Any]:
        return {
            "pg_cron": self.status.to_json(),
            "note": self.note,
            "jobs": [j.to_json() for j in self.jobs],
            "routines": [f"pgrunbook.{r}()" for r in self.routines],
        }


def show(conn: psycopg.Connection[Any], info: ConnInfo, *, neon: bool = False) -> Shown:
    """pgrunbook's jobs for this database, their last and next runs, and its routines."""
    status = cron.probe(conn, neon=neon)
    routines = functions.installed_routines(conn)
    with cron_connection(conn, info, status) as (cron_conn, reason):
        if cron_conn is None or reason is not None:
            return Shown(status, [], routines, reason)
        if status.here and status.installed_version is None:
            return Shown(status, [], routines, "pg_cron is not created in this database")
        found = with_next_runs(cron.jobs(cron_conn, status.database))
    return Shown(status, found, routines, None if found else "no pgrunbook jobs scheduled")


@dataclass
class Removed:
    status: CronStatus
    jobs: list[CronJob]
    routines: list[str]
    statements: list[Statement]
    note: str | None
    dry_run: bool = False

    @property
    def empty(self) -> bool:
        return not self.jobs and not self.routines

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "note": self.note,
            "unscheduled": [j.name for j in self.jobs],
            "dropped": [f"pgrunbook.{r}()" for r in self.routines],
            "sql": [{"database": s.database, "sql": s.sql} for s in self.statements],
        }


def remove(
    conn: psycopg.Connection[Any],
    info: ConnInfo,
    *,
    dry_run: bool = False,
    confirm: Callable[[Removed], bool] | None = None,
    neon: bool = False,
) -> Removed:
    """Unschedule pgrunbook's jobs for this database and drop the routines install created.

    ``confirm(removed)`` is asked before anything changes (not on a dry run, nor when
    there is nothing to remove); False leaves everything as it is.
    """
    status = cron.probe(conn, neon=neon)
    here = status.database
    routines = functions.installed_routines(conn)
    with cron_connection(conn, info, status) as (cron_conn, reason):
        usable = cron_conn is not None and reason is None
        if usable and status.here and status.installed_version is None:
            usable, reason = False, "pg_cron is not created in this database"
        found = cron.jobs(cron_conn, here) if usable and cron_conn is not None else []
        cron_db = status.cron_database or here
        statements = [
            Statement(cron_db, cron.unschedule_statement(j.jobid).as_string()) for j in found
        ]
        statements += [Statement(here, functions.drop_statement(r).as_string()) for r in routines]
        note = None if usable else f"no pg_cron jobs to remove: {reason}"
        result = Removed(status, found, routines, statements, note, dry_run)
        if dry_run or result.empty or (confirm is not None and not confirm(result)):
            return result
        assert cron_conn is not None or not found
        for job in found:
            assert cron_conn is not None
            cron_conn.execute(cron.unschedule_statement(job.jobid))
        with conn.transaction():
            for name in routines:
                conn.execute(functions.drop_statement(name))
    return result
