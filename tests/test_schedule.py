"""``pgrunbook schedule``: pg_cron jobs and the routines they call, on PostgreSQL 15 with
pg_cron (the reference schema seeded into ``postgres``, pg_cron's database), and the crontab
/ systemd fallback on the embedded server, which has no pg_cron."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import click
import psycopg
import pytest
from psycopg import sql

from pgrunbook.cleanup import ResolvedPolicy
from pgrunbook.cleanup.batches import RUNS_SQL
from pgrunbook.cli.common import err_console
from pgrunbook.cli.main import cli, run
from pgrunbook.cli.schedule_cmd import schedule_group
from pgrunbook.dsn import ConnInfo
from pgrunbook.errors import PgRunbookError
from pgrunbook.history import snapshot_statement
from pgrunbook.profile import load_profile
from pgrunbook.schedule import functions
from pgrunbook.schedule.installer import plan
from pgrunbook.schedule.jobs import WHEN
from pgrunbook.schedule.nextrun import next_run
from pgrunbook.seed import seed
from tests import pg15_servers
from tests.support import (
    ROLE_PASSWORD,
    TEST_ANCHOR,
    autocommit,
    keys_of,
    retention_policies,
    url,
)

pg15 = pg15_servers.pg15
pg15_cron = pg15_servers.pg15_cron

SNAPSHOT = {c: snapshot_statement("public", c, "pg_cron").as_string() for c in WHEN}
EXPECTED_JOBS = [
    ("pgrunbook-daily", "0 3 * * *", 'CALL "pgrunbook"."run_daily"()', True, "postgres"),
    ("pgrunbook-monthly-snapshot", "0 5 1 * *", SNAPSHOT["monthly"], True, "postgres"),
    (
        "pgrunbook-monthly-vacuum",
        "0 5 1 * *",
        'VACUUM (ANALYZE) "public"."Message", "public"."Notification", "public"."GiftSend"',
        True,
        "postgres",
    ),
    ("pgrunbook-quarterly-snapshot", "0 6 1 1,4,7,10 *", SNAPSHOT["quarterly"], True, "postgres"),
    ("pgrunbook-weekly", "0 4 * * 0", 'CALL "pgrunbook"."run_weekly"()', True, "postgres"),
]
ROUTINES = [
    "cleanup_expired_refresh_tokens",
    "cleanup_read_notifications",
    "run_daily",
    "run_weekly",
]
JOBS_SQL = (
    "SELECT jobname, schedule, command, active, database FROM cron.job"
    " WHERE starts_with(jobname, 'pgrunbook-') ORDER BY jobname"
)
PGRUNBOOK_PROCS_SQL = (
    "SELECT p.proname::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
    " WHERE n.nspname = 'pgrunbook' ORDER BY 1"
)


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``pgrunbook schedule ARGS``: through ``run`` once cli/main.py registers the group,
    until then the group itself with run's error handling (one line, exit code)."""
    if "schedule" in cli.commands:
        code = run(["schedule", *args])
    else:
        try:
            result = schedule_group.main(
                args=list(args), prog_name="pgrunbook schedule", standalone_mode=False
            )
            code = result if isinstance(result, int) else 0
        except PgRunbookError as exc:
            err_console.print(f"error: {exc.one_line()}", soft_wrap=True)
            code = exc.exit_code
        except click.exceptions.Exit as exc:
            code = exc.exit_code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def cron_db(pg15_cron: ConnInfo) -> ConnInfo:
    """The reference schema and tiny data in ``postgres``, where pg_cron runs jobs."""
    with autocommit(pg15_cron) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_cron")
    seed(pg15_cron, scale="tiny", anchor=TEST_ANCHOR)
    return pg15_cron


@pytest.fixture
def clean(cron_db: ConnInfo, capsys: pytest.CaptureFixture[str]) -> Iterator[ConnInfo]:
    """No pgrunbook jobs or routines before and after the test."""
    assert _cli(capsys, "remove", "--dsn", url(cron_db), "--yes")[0] == 0
    yield cron_db
    assert _cli(capsys, "remove", "--dsn", url(cron_db), "--yes")[0] == 0


def _expire(conn: psycopg.Connection[Any], p: ResolvedPolicy, count: int) -> set[object]:
    """Make ``count`` rows that the policy does not select yet old enough for it."""
    keep = sorted(keys_of(conn, p, matching=False) - keys_of(conn, p, matching=True), key=str)
    chosen = keep[:count]
    assert len(chosen) == count
    sets = [
        sql.SQL("{} = (now() AT TIME ZONE 'UTC') - interval '40 days'").format(
            sql.Identifier(p.column)
        )
    ]
    if p.policy.where is not None:  # read_notifications: also mark them read
        sets.append(sql.SQL("{} = true").format(sql.Identifier("isRead")))
    conn.execute(
        sql.SQL("UPDATE {} SET {} WHERE {} = ANY(%s)").format(
            p.ident, sql.SQL(", ").join(sets), sql.Identifier(p.key)
        ),
        (chosen,),
    )
    return set(chosen)


def _hold_lock(info: ConnInfo, p: ResolvedPolicy, seconds: float, locked: threading.Event) -> None:
    with autocommit(info) as conn, conn.transaction():
        conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(p.ident))
        locked.set()
        time.sleep(seconds)


def test_install_creates_exactly_the_jobs_and_twice_is_the_same(
    clean: ConnInfo, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _cli(capsys, "install", "--dsn", url(clean), "--json")
    assert code == 0
    first = json.loads(out)
    assert "fallback" not in first and first["pg_cron"]["cron_database"] == "postgres"
    with autocommit(clean) as conn:
        assert conn.execute(JOBS_SQL).fetchall() == EXPECTED_JOBS
        ids = conn.execute("SELECT jobname, jobid FROM cron.job ORDER BY 1").fetchall()
        assert conn.execute(PGRUNBOOK_PROCS_SQL).fetchall() == [(r,) for r in ROUTINES]
        assert [j["name"] for j in first["jobs"]] == [j[0] for j in EXPECTED_JOBS]
        assert all(j["next_run"] for j in first["jobs"])
        code, out, _ = _cli(capsys, "install", "--dsn", url(clean), "--json")
        assert code == 0 and json.loads(out)["unscheduled"] == []
        assert conn.execute(JOBS_SQL).fetchall() == EXPECTED_JOBS
        assert conn.execute("SELECT jobname, jobid FROM cron.job ORDER BY 1").fetchall() == ids
        assert conn.execute(PGRUNBOOK_PROCS_SQL).fetchall() == [(r,) for r in ROUTINES]
        # a stale job of an older install is removed; someone else's job is left alone
        conn.execute("SELECT cron.schedule('pgrunbook-daily-old', '0 1 * * *', 'SELECT 1')")
        conn.execute("SELECT cron.schedule('their-job', '0 1 * * *', 'SELECT 1')")
        code, out, _ = _cli(capsys, "install", "--dsn", url(clean), "--json")
        assert json.loads(out)["unscheduled"] == ["pgrunbook-daily-old"]
        assert conn.execute(JOBS_SQL).fetchall() == EXPECTED_JOBS
        conn.execute("SELECT cron.unschedule('their-job')")


def test_dry_runs_change_nothing(clean: ConnInfo, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _cli(capsys, "install", "--dsn", url(clean), "--dry-run")
    assert code == 0 and "nothing changed" in err
    assert "SELECT cron.schedule('pgrunbook-daily', '0 3 * * *', " in out
    assert 'CREATE OR REPLACE PROCEDURE "pgrunbook"."cleanup_expired_refresh_tokens"()' in out
    with autocommit(clean) as conn:
        assert conn.execute(JOBS_SQL).fetchall() == []
        assert conn.execute(PGRUNBOOK_PROCS_SQL).fetchall() == []
        assert _cli(capsys, "install", "--dsn", url(clean))[0] == 0
        code, out, _ = _cli(capsys, "remove", "--dsn", url(clean), "--dry-run", "--json")
        document = json.loads(out)
        assert code == 0 and document["dry_run"] is True
        assert sorted(document["unscheduled"]) == [j[0] for j in EXPECTED_JOBS]
        assert document["dropped"] == [f"pgrunbook.{r}()" for r in ROUTINES]
        assert conn.execute(JOBS_SQL).fetchall() == EXPECTED_JOBS
        assert conn.execute(PGRUNBOOK_PROCS_SQL).fetchall() == [(r,) for r in ROUTINES]


def test_remove_leaves_nothing_but_the_history(
    clean: ConnInfo, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _cli(capsys, "install", "--dsn", url(clean))[0] == 0
    with autocommit(clean) as conn:
        conn.execute("SELECT cron.schedule('their-job', '0 1 * * *', 'SELECT 1')")
        conn.execute("CREATE PROCEDURE pgrunbook.their_routine() LANGUAGE sql AS 'SELECT 1'")
        try:
            code, _, err = _cli(capsys, "remove", "--dsn", url(clean))  # stdin is not a tty
            assert code == 2 and "--yes" in err
            assert conn.execute(JOBS_SQL).fetchall() == EXPECTED_JOBS
            code, out, _ = _cli(capsys, "remove", "--dsn", url(clean), "--yes", "--json")
            assert code == 0
            assert sorted(json.loads(out)["unscheduled"]) == [j[0] for j in EXPECTED_JOBS]
            assert conn.execute(JOBS_SQL).fetchall() == []
            assert conn.execute(PGRUNBOOK_PROCS_SQL).fetchall() == [("their_routine",)]
            assert conn.execute("SELECT jobname FROM cron.job").fetchall() == [("their-job",)]
            history = (
                "SELECT to_regclass('pgrunbook.cleanup_runs'), to_regclass('pgrunbook.snapshots')"
            )
            assert None not in conn.execute(history).fetchone()  # type: ignore[operator]
            code, out, _ = _cli(capsys, "remove", "--dsn", url(clean), "--yes")
            assert code == 0 and "nothing to remove" in out
        finally:
            conn.execute("SELECT cron.unschedule('their-job')")
            conn.execute("DROP PROCEDURE pgrunbook.their_routine()")


def test_installed_procedures_delete_exactly_the_expired_rows(
    clean: ConnInfo, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _cli(capsys, "install", "--dsn", url(clean))[0] == 0
    with autocommit(clean) as conn:
        policies = retention_policies(conn)
        for name, procedure in (
            ("expired_refresh_tokens", "run_daily"),
            ("read_notifications", "run_weekly"),
        ):
            p = policies[name]
            injected = _expire(conn, p, 3)
            everything, doomed = (
                keys_of(conn, p, matching=False),
                keys_of(conn, p, matching=True),
            )
            assert injected <= doomed
            last = conn.execute("SELECT coalesce(max(id), 0) FROM pgrunbook.cleanup_runs")
            before = last.fetchone()[0]  # type: ignore[index]
            conn.execute(sql.SQL("CALL {}()").format(sql.Identifier("pgrunbook", procedure)))
            assert keys_of(conn, p, matching=False) == everything - doomed
            runs = conn.execute(
                "SELECT policy, deleted, interrupted, tool_version FROM pgrunbook.cleanup_runs"
                " WHERE id > %s",
                (before,),
            ).fetchall()
            assert [r[:3] for r in runs] == [(name, len(doomed), False)]
            assert runs[0][3].endswith("(schedule)")
        # run_weekly ends with ANALYZE: a table never analyzed gets statistics
        conn.execute("CREATE TABLE public.analyze_probe AS SELECT generate_series(1, 100) AS g")
        try:
            reltuples = (
                "SELECT reltuples FROM pg_class WHERE oid = 'public.analyze_probe'::regclass"
            )
            assert conn.execute(reltuples).fetchone() == (-1,)
            conn.execute("CALL pgrunbook.run_weekly()")
            assert conn.execute(reltuples).fetchone() == (100,)
        finally:
            conn.execute("DROP TABLE public.analyze_probe")


def test_cleanup_procedure_retries_lock_timeouts_then_gives_up(cron_db: ConnInfo) -> None:
    """A batch that cannot lock the table is retried; it gives up after the attempts and
    records the run as interrupted, deleting nothing."""
    with autocommit(cron_db) as conn, autocommit(cron_db) as app:
        p = retention_policies(conn)["expired_refresh_tokens"]
        routine = functions.cleanup_routine(p, 100, attempts=3, pause=0.05)
        conn.execute(RUNS_SQL.encode())  # what install creates first: the runs' table
        for statement in routine.statements():
            conn.execute(statement)
        try:
            doomed = _expire(conn, p, 2) | keys_of(conn, p, matching=True)
            call = sql.SQL("CALL {}()").format(routine.ident)
            with app.transaction():
                app.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(p.ident))
                started = time.monotonic()
                conn.execute(call)
                waited = time.monotonic() - started
            assert 0.3 < waited < 5  # three 100 ms lock timeouts and two pauses
            assert keys_of(conn, p, matching=True) == doomed
            last = conn.execute(
                "SELECT deleted, interrupted FROM pgrunbook.cleanup_runs ORDER BY id DESC LIMIT 1"
            ).fetchone()
            assert last == (0, True)
            # the lock goes away while the procedure waits: it carries on and finishes
            locked = threading.Event()
            holder = threading.Thread(target=_hold_lock, args=(cron_db, p, 0.2, locked))
            holder.start()
            assert locked.wait(5)
            conn.execute(call)
            holder.join()
            assert keys_of(conn, p, matching=True) == set()
            last = conn.execute(
                "SELECT deleted, interrupted FROM pgrunbook.cleanup_runs ORDER BY id DESC LIMIT 1"
            ).fetchone()
            assert last == (len(doomed), False)
        finally:
            conn.execute(functions.drop_statement(routine.name))


def test_snapshot_and_vacuum_jobs_run_as_pg_cron_runs_them(
    clean: ConnInfo, capsys: pytest.CaptureFixture[str]
) -> None:
    """pg_cron sends a job's command as one query: the same text, run here, works."""
    assert _cli(capsys, "install", "--dsn", url(clean))[0] == 0
    with autocommit(clean) as conn:
        commands = dict(conn.execute("SELECT jobname, command FROM cron.job").fetchall())
        before = conn.execute("SELECT count(*) FROM pgrunbook.snapshots").fetchone()
        conn.execute(commands["pgrunbook-quarterly-snapshot"])
        after = conn.execute(
            "SELECT count(*), (array_agg(cadence || ' ' || source ORDER BY id DESC))[1],"
            " (array_agg(tables ? 'RefreshToken' ORDER BY id DESC))[1] FROM pgrunbook.snapshots"
        ).fetchone()
        assert before is not None and after == (before[0] + 1, "quarterly pg_cron", True)
        counts = (
            "SELECT relname, vacuum_count, analyze_count FROM pg_stat_user_tables"
            " WHERE relname IN ('Message', 'Notification', 'GiftSend') ORDER BY 1"
        )
        before_vacuum = conn.execute(counts).fetchall()
        assert [r[0] for r in before_vacuum] == ["GiftSend", "Message", "Notification"]
        conn.execute(commands["pgrunbook-monthly-vacuum"])
        after_vacuum = conn.execute(counts).fetchall()
        assert after_vacuum == [(t, v + 1, a + 1) for t, v, a in before_vacuum]


def test_a_job_run_by_pg_cron_deletes_the_expired_tokens(
    clean: ConnInfo, capsys: pytest.CaptureFixture[str]
) -> None:
    """The one slow test (up to a minute): pg_cron itself runs the daily job."""
    assert _cli(capsys, "install", "--dsn", url(clean))[0] == 0
    with autocommit(clean) as conn:
        p = retention_policies(conn)["expired_refresh_tokens"]
        injected = _expire(conn, p, 4)
        everything, doomed = (
            keys_of(conn, p, matching=False),
            keys_of(conn, p, matching=True),
        )
        assert injected <= doomed
        row = conn.execute(
            "SELECT jobid FROM cron.job WHERE jobname = 'pgrunbook-daily'"
        ).fetchone()
        assert row is not None
        jobid = row[0]
        conn.execute("SELECT cron.alter_job(%s, schedule => '* * * * *')", (jobid,))
        deadline = time.monotonic() + 75
        status = None
        while time.monotonic() < deadline:
            found = conn.execute(
                "SELECT status, return_message FROM cron.job_run_details WHERE jobid = %s"
                " AND status IN ('succeeded', 'failed') ORDER BY runid DESC LIMIT 1",
                (jobid,),
            ).fetchone()
            if found is not None:
                status = found
                break
            time.sleep(1)
        assert status == ("succeeded", "CALL")
        assert keys_of(conn, p, matching=False) == everything - doomed
        code, out, _ = _cli(capsys, "show", "--dsn", url(clean), "--json")
        shown = {j["name"]: j for j in json.loads(out)["jobs"]}
        assert code == 0 and shown["pgrunbook-daily"]["last_run"]["status"] == "succeeded"
        assert shown["pgrunbook-weekly"]["last_run"] is None


def test_show_lists_jobs_and_routines(clean: ConnInfo, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _cli(capsys, "show", "--dsn", url(clean))
    assert code == 0 and "no pgrunbook jobs scheduled" in err
    assert _cli(capsys, "install", "--dsn", url(clean))[0] == 0
    code, out, _ = _cli(capsys, "show", "--dsn", url(clean), "--json")
    document = json.loads(out)
    rows = [
        (j["name"], j["schedule"], j["command"], j["active"], j["database"])
        for j in document["jobs"]
    ]
    assert code == 0 and rows == EXPECTED_JOBS
    assert document["routines"] == [f"pgrunbook.{r}()" for r in ROUTINES]
    code, out, _ = _cli(capsys, "show", "--dsn", url(clean))
    assert code == 0 and "pgrunbook-quarterly-snapshot" in out


def test_crontab_flag_prints_the_fallback_even_with_pg_cron(
    clean: ConnInfo, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _cli(capsys, "install", "--dsn", url(clean), "--crontab", "--json")
    assert code == 0 and "--crontab" in json.loads(out)["fallback"]["reason"]
    with autocommit(clean) as conn:
        assert conn.execute(JOBS_SQL).fetchall() == []


def test_without_pg_cron_install_prints_crontab_and_systemd_timers(
    db: ConnInfo, login_role: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The embedded server has no pg_cron: the fallback, why, and never the password."""
    dsn = url(db.with_params(user=login_role, password=ROLE_PASSWORD))
    assert ROLE_PASSWORD in dsn
    code, out, err = _cli(capsys, "install", "--dsn", dsn, "--json")
    assert code == 0
    document = json.loads(out)["fallback"]
    assert "pg_cron is not installed on this server" in document["reason"]
    lines = document["crontab"]
    assert [line.split(" cd ")[0] for line in lines] == [
        "0 3 * * *",
        "0 4 * * 0",
        "0 5 1 * *",
        "0 6 1 1,4,7,10 *",
    ]
    for line, cadence in zip(lines, ("daily", "weekly", "monthly", "quarterly"), strict=True):
        assert line.endswith(f"run {cadence}")
    units = {u["name"]: u["text"] for u in document["systemd"]}
    assert sorted(units) == sorted(
        f"pgrunbook-{c}.{kind}" for c in WHEN for kind in ("service", "timer")
    )
    assert "OnCalendar=*-01,04,07,10-01 06:00:00 UTC" in units["pgrunbook-quarterly.timer"]
    assert "OnCalendar=Sun *-*-* 04:00:00 UTC" in units["pgrunbook-weekly.timer"]
    assert "run daily" in units["pgrunbook-daily.service"]
    code, text, err = _cli(capsys, "install", "--dsn", dsn)
    assert code == 0 and "pg_cron is not installed on this server" in err
    assert lines[0] in text and "OnCalendar=*-*-01 05:00:00 UTC" in text
    for output in (out, text, err):
        assert ROLE_PASSWORD not in output and "--dsn" not in output
    with autocommit(db) as conn:
        assert conn.execute("SELECT to_regnamespace('pgrunbook')").fetchone() == (None,)


def test_routines_work_on_the_snake_case_schema(snake_db: ConnInfo) -> None:
    """The procedures need no pg_cron: created from the plan and CALLed on the embedded
    server, in snake_case naming, they delete exactly the expired tokens."""
    with autocommit(snake_db) as conn:
        the_plan = plan(conn, "public", load_profile(), batch_size=7)
        vacuum = [j.command for j in the_plan.jobs if j.name == "pgrunbook-monthly-vacuum"]
        assert vacuum == [
            'VACUUM (ANALYZE) "public"."messages", "public"."notifications", "public"."gift_sends"'
        ]
        with conn.transaction():
            for text in the_plan.setup():
                conn.execute(text.encode())
        p = retention_policies(conn)["expired_refresh_tokens"]
        everything, doomed = (
            keys_of(conn, p, matching=False),
            keys_of(conn, p, matching=True),
        )
        assert len(doomed) > 7  # several batches
        conn.execute("CALL pgrunbook.run_daily()")
        assert keys_of(conn, p, matching=False) == everything - doomed
        run_row = conn.execute("SELECT deleted, batches, batch_size FROM pgrunbook.cleanup_runs")
        assert run_row.fetchall() == [(len(doomed), -(-len(doomed) // 7), 7)]


def test_next_run_and_calendar_forms() -> None:
    after = datetime(2026, 11, 24, 5, 0, tzinfo=UTC)  # a Tuesday
    assert {c: next_run(w.cron, after) for c, w in WHEN.items()} == {
        "daily": datetime(2026, 11, 25, 3, 0, tzinfo=UTC),
        "weekly": datetime(2026, 11, 29, 4, 0, tzinfo=UTC),
        "monthly": datetime(2026, 12, 1, 5, 0, tzinfo=UTC),
        "quarterly": datetime(2027, 1, 1, 6, 0, tzinfo=UTC),
    }
    assert next_run("*/15 * * * *", after) == datetime(2026, 11, 24, 5, 15, tzinfo=UTC)
    assert next_run("@daily", after) is None
    assert [w.on_calendar for w in WHEN.values()] == [
        "*-*-* 03:00:00 UTC",
        "Sun *-*-* 04:00:00 UTC",
        "*-*-01 05:00:00 UTC",
        "*-01,04,07,10-01 06:00:00 UTC",
    ]


def test_another_database_is_scheduled_from_pg_crons_database(
    clean: ConnInfo, capsys: pytest.CaptureFixture[str]
) -> None:
    """cron.database_name is ``postgres``; a database next to it gets its jobs through
    cron.schedule_in_database, and a second database's same-named jobs are refused."""
    with autocommit(clean) as conn:
        conn.execute("DROP DATABASE IF EXISTS schedule_other")
        conn.execute("CREATE DATABASE schedule_other")
    other = clean.with_params(dbname="schedule_other")
    with autocommit(other) as conn:
        conn.execute(
            'CREATE TABLE "RefreshToken" (id int PRIMARY KEY, "expiresAt" timestamp(3) NOT NULL);'
            'INSERT INTO "RefreshToken" VALUES'
            " (1, now() - interval '8 days'), (2, now() - interval '6 days'),"
            " (3, now() - interval '90 days')"
        )
    code, out, err = _cli(capsys, "install", "--dsn", url(other), "--json")
    assert code == 0, err
    document = json.loads(out)
    assert [s["policy"] for s in document["skipped"]] == ["read_notifications"]
    with autocommit(clean) as conn:
        assert conn.execute(JOBS_SQL).fetchall() == [
            (
                "pgrunbook-daily",
                "0 3 * * *",
                'CALL "pgrunbook"."run_daily"()',
                True,
                "schedule_other",
            ),
            (
                "pgrunbook-monthly-snapshot",
                "0 5 1 * *",
                SNAPSHOT["monthly"],
                True,
                "schedule_other",
            ),
            (
                "pgrunbook-quarterly-snapshot",
                "0 6 1 1,4,7,10 *",
                SNAPSHOT["quarterly"],
                True,
                "schedule_other",
            ),
            (
                "pgrunbook-weekly",
                "0 4 * * 0",
                'CALL "pgrunbook"."run_weekly"()',
                True,
                "schedule_other",
            ),
        ]
        assert conn.execute(PGRUNBOOK_PROCS_SQL).fetchall() == []  # routines live in "other"
        code, _, err = _cli(capsys, "install", "--dsn", url(clean))
        assert code == 2 and "in database 'schedule_other'" in err
        assert conn.execute(PGRUNBOOK_PROCS_SQL).fetchall() == []
    with autocommit(other) as conn:
        assert conn.execute(PGRUNBOOK_PROCS_SQL).fetchall() == [
            ("cleanup_expired_refresh_tokens",),
            ("run_daily",),
            ("run_weekly",),
        ]
        conn.execute("CALL pgrunbook.run_daily()")
        assert conn.execute('SELECT id FROM "RefreshToken" ORDER BY id').fetchall() == [(2,)]
    code, out, _ = _cli(capsys, "show", "--dsn", url(other), "--json")
    assert code == 0 and len(json.loads(out)["jobs"]) == 4
    assert _cli(capsys, "remove", "--dsn", url(other), "--yes")[0] == 0
    with autocommit(clean) as conn:
        assert conn.execute(JOBS_SQL).fetchall() == []
        conn.execute("DROP DATABASE schedule_other")


def test_pg_cron_installed_but_not_preloaded_gives_the_fallback(
    pg15: ConnInfo, capsys: pytest.CaptureFixture[str]
) -> None:
    """Debian's pg_cron package is on the plain PostgreSQL 15 server too, but not loaded."""
    with autocommit(pg15) as conn:
        available = "SELECT count(*) FROM pg_available_extensions WHERE name = 'pg_cron'"
        assert conn.execute(available).fetchone() == (1,)
    code, out, _ = _cli(capsys, "install", "--dsn", url(pg15), "--json")
    document = json.loads(out)
    assert code == 0 and document["pg_cron"]["cron_database"] is None
    assert document["fallback"]["reason"] == (
        "pg_cron is not in shared_preload_libraries, so its scheduler is not running"
    )
    assert len(document["fallback"]["crontab"]) == 4
    code, out, _ = _cli(capsys, "show", "--dsn", url(pg15), "--json")
    assert code == 0 and json.loads(out)["jobs"] == []
