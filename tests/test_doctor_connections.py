"""``pgrunbook doctor connections``: only the intended idle session is terminated.

Real sessions: an old idle one of a plain role (the one to terminate), an old idle one of
the database owner, a busy one (pg_sleep), a young idle one, and the test's own (a
superuser, idle). The limit is 0.01 minutes (0.6 s) and the test waits past it.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from psycopg import errors, sql

from pgrunbook.cli.main import run
from pgrunbook.doctor import find_idle, terminate
from pgrunbook.dsn import MASK, ConnInfo
from tests.support import ROLE_PASSWORD, PgServer, rows

LIMIT_MINUTES = "0.01"  # 0.6 s
OLD_ENOUGH = 0.9  # seconds the old sessions wait before the command runs
ACTIVE_SQL = "SELECT state FROM pg_stat_activity WHERE pid = %s"


def url(info: ConnInfo) -> str:
    if info.password is None:
        return info.display()
    return info.display().replace(MASK, quote(info.password, safe=""), 1)


def dead(conn: psycopg.Connection[Any]) -> bool:
    """The connection fails when used (only for a session that should be gone)."""
    try:
        conn.execute("SELECT 1")
    except psycopg.OperationalError:
        return True
    return False


@dataclass
class Sessions:
    admin: ConnInfo  # a superuser (the server's admin) on the test database
    plain: ConnInfo  # the login_role fixture
    owner: ConnInfo  # the database's owner, not a superuser
    owner_role: str
    own: psycopg.Connection[Any]  # the test's own session (superuser), idle
    plain_old: psycopg.Connection[Any]
    owner_old: psycopg.Connection[Any]
    busy: psycopg.Connection[Any]  # running pg_sleep
    plain_young: psycopg.Connection[Any]

    def pids(self, *conns: psycopg.Connection[Any]) -> list[int]:
        return [c.info.backend_pid for c in conns]

    def alive(self, *conns: psycopg.Connection[Any]) -> bool:
        """The sessions still exist (seen from another session: they stay idle)."""
        pids = self.pids(*conns)
        found = rows(self.admin, "SELECT pid FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,))
        return sorted(int(str(p)) for (p,) in found) == sorted(pids)


def _connect(info: ConnInfo) -> psycopg.Connection[Any]:
    return psycopg.connect(info.conninfo(), autocommit=True)


@pytest.fixture
def sessions(pg_server: PgServer, empty_db: ConnInfo, login_role: str) -> Iterator[Sessions]:
    if pg_server.local is None:
        pytest.skip("logs in as new roles, which depends on the embedded server's pg_hba.conf")
    owner_role = f"pgr_owner_{uuid.uuid4().hex[:8]}"
    pg_server.create_login_role(owner_role, ROLE_PASSWORD)
    database = sql.Identifier(empty_db.dbname)
    plain = empty_db.with_params(user=login_role, password=ROLE_PASSWORD)
    owner = empty_db.with_params(user=owner_role, password=ROLE_PASSWORD)
    opened: list[psycopg.Connection[Any]] = []
    sleepers: list[threading.Thread] = []

    def open_(info: ConnInfo) -> psycopg.Connection[Any]:
        conn = _connect(info)
        opened.append(conn)
        return conn

    def sleep_until_cancelled(conn: psycopg.Connection[Any]) -> None:
        with contextlib.suppress(errors.QueryCanceled):
            conn.execute("SELECT pg_sleep(60)")

    try:
        pg_server.execute(
            sql.SQL("ALTER DATABASE {} OWNER TO {}").format(database, sql.Identifier(owner_role))
        )
        own, plain_old, owner_old, busy = (open_(i) for i in (empty_db, plain, owner, plain))
        sleepers.append(threading.Thread(target=sleep_until_cancelled, args=(busy,)))
        sleepers[0].start()
        deadline = time.monotonic() + 10
        while rows(empty_db, ACTIVE_SQL, (busy.info.backend_pid,)) != [("active",)]:
            assert time.monotonic() < deadline, "pg_sleep never started"
            time.sleep(0.02)
        own.execute("SELECT 1")
        time.sleep(OLD_ENOUGH)
        yield Sessions(
            empty_db, plain, owner, owner_role, own, plain_old, owner_old, busy, open_(plain)
        )
    finally:
        for conn in opened:
            conn.cancel_safe()
        for thread in sleepers:
            thread.join(10)
        for conn in opened:
            conn.close()
        pg_server.execute(
            sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
                database, sql.Identifier(pg_server.admin.user)
            )
        )
        pg_server.drop_role(owner_role)


def connections(
    capsys: pytest.CaptureFixture[str], info: ConnInfo, *args: str
) -> tuple[int, dict[str, Any]]:
    code = run(["doctor", "connections", "--dsn", url(info), "--json", *args])
    out, err = capsys.readouterr()
    assert ROLE_PASSWORD not in out + err
    return code, json.loads(out) if out else {}


def by_pid(document: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {entry["pid"]: entry for entry in document["idle"]}


def test_terminates_only_the_intended_idle_session(
    capsys: pytest.CaptureFixture[str], sessions: Sessions
) -> None:
    s = sessions
    code, document = connections(capsys, s.admin, "--terminate-idle", LIMIT_MINUTES, "--yes")

    assert code == 0
    assert document["terminated"] == s.pids(s.plain_old)
    listed = by_pid(document)
    # Too young, or busy: not even listed. The command's own session never is.
    for conn in (s.plain_young, s.busy):
        assert conn.info.backend_pid not in listed
    assert listed[s.owner_old.info.backend_pid]["status"] == "skipped"
    assert listed[s.owner_old.info.backend_pid]["reason"] == "database owner"
    assert listed[s.own.info.backend_pid]["status"] == "skipped"
    assert listed[s.own.info.backend_pid]["reason"] == "superuser"
    assert set(listed) == set(s.pids(s.plain_old, s.owner_old, s.own))

    assert dead(s.plain_old)
    assert s.alive(s.owner_old, s.plain_young, s.own)
    assert rows(s.admin, ACTIVE_SQL, (s.busy.info.backend_pid,)) == [("active",)]

    # Named explicitly, the owner's idle session goes too (and only that user's).
    code, document = connections(
        capsys, s.admin, "--terminate-idle", LIMIT_MINUTES, "--user", s.owner_role, "--yes"
    )
    assert code == 0
    assert document["terminated"] == s.pids(s.owner_old)
    assert {e["user"] for e in document["idle"]} == {s.owner_role}
    assert dead(s.owner_old)
    assert s.alive(s.plain_young, s.own)


def test_dry_run_shows_pids_and_sql_and_terminates_nothing(
    capsys: pytest.CaptureFixture[str], sessions: Sessions
) -> None:
    s = sessions
    code, document = connections(capsys, s.admin, "--terminate-idle", LIMIT_MINUTES, "--dry-run")
    assert code == 0
    assert document["terminated"] == []
    pid = s.plain_old.info.backend_pid
    assert by_pid(document)[pid]["status"] == "eligible"
    [statement] = document["sql"]
    assert "pg_terminate_backend(a.pid, 5000)" in statement
    assert f"WHERE a.pid = {pid}" in statement
    assert "AND a.state = 'idle'" in statement

    code = run(
        [
            "doctor",
            "connections",
            "--dsn",
            url(s.admin),
            "--terminate-idle",
            LIMIT_MINUTES,
            "--dry-run",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "--dry-run: the SQL that would run" in out
    assert f"WHERE a.pid = {pid}" in out
    assert s.alive(s.plain_old, s.owner_old, s.own, s.plain_young)


def test_all_databases(
    capsys: pytest.CaptureFixture[str], pg_server: PgServer, sessions: Sessions
) -> None:
    """From another database: none of the test database's sessions, unless asked for all."""
    s = sessions
    code, document = connections(capsys, pg_server.admin, "--terminate-idle", LIMIT_MINUTES)
    assert code == 0
    assert document["database"] == pg_server.admin.dbname
    assert s.plain_old.info.backend_pid not in by_pid(document)

    args = ("--terminate-idle", LIMIT_MINUTES, "--all-databases", "--dry-run")
    code, document = connections(capsys, pg_server.admin, *args)
    assert code == 0
    listed = by_pid(document)
    plain, owner = listed[s.plain_old.info.backend_pid], listed[s.owner_old.info.backend_pid]
    assert (plain["database"], plain["status"]) == (s.admin.dbname, "eligible")
    # The owner is the owner of the session's database, not of the one pgrunbook is in.
    assert (owner["database"], owner["status"], owner["reason"]) == (
        s.admin.dbname,
        "skipped",
        "database owner",
    )
    assert s.alive(s.plain_old, s.owner_old)


def test_without_yes_it_refuses_when_not_interactive(
    capsys: pytest.CaptureFixture[str], sessions: Sessions
) -> None:
    s = sessions
    code = run(["doctor", "connections", "--dsn", url(s.admin), "--terminate-idle", LIMIT_MINUTES])
    out, err = capsys.readouterr()
    assert code == 2
    assert str(s.plain_old.info.backend_pid) in out  # listed first
    assert "needs confirmation" in err and "--yes" in err
    assert s.alive(s.plain_old)


def test_listing_alone_terminates_nothing(
    capsys: pytest.CaptureFixture[str], sessions: Sessions
) -> None:
    s = sessions
    code = run(["doctor", "connections", "--dsn", url(s.admin), "--yes"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith(f"pgrunbook doctor connections: database {s.admin.dbname}")
    assert "No session idle for over 10 min." in out  # the default listing limit
    assert s.alive(s.plain_old, s.owner_old, s.own, s.plain_young)


def test_a_role_without_the_privilege_is_refused_in_one_line(
    capsys: pytest.CaptureFixture[str], pg_server: PgServer, sessions: Sessions
) -> None:
    s = sessions
    # Without pg_read_all_stats the plain role cannot even see the others' sessions.
    code, document = connections(capsys, s.plain, "--terminate-idle", LIMIT_MINUTES, "--dry-run")
    assert code == 0
    assert document["hidden_sessions"] >= 2  # the owner's and the admin's, at least
    assert s.owner_old.info.backend_pid not in by_pid(document)

    pg_server.execute(sql.SQL("GRANT pg_read_all_stats TO {}").format(sql.Identifier(s.plain.user)))
    code, document = connections(
        capsys, s.plain, "--terminate-idle", LIMIT_MINUTES, "--user", s.owner_role, "--yes"
    )
    assert code == 0
    assert document["terminated"] == []
    [entry] = document["idle"]
    assert entry["pid"] == s.owner_old.info.backend_pid
    assert entry["status"] == "skipped"
    assert entry["reason"].startswith("not allowed: permission denied to terminate process")
    assert "pg_signal_backend" in entry["reason"]
    assert s.alive(s.owner_old)


def test_a_session_that_became_active_is_not_terminated(sessions: Sessions) -> None:
    s = sessions
    with _connect(s.admin) as conn:
        report = find_idle(conn, 0.6)
        [entry] = report.eligible
        assert entry.session.pid == s.plain_old.info.backend_pid
        s.plain_old.execute("SELECT 1")  # active for a moment: its idle time starts over
        terminate(conn, report)
    assert entry.status == "skipped"
    assert entry.reason is not None and entry.reason.startswith("no longer idle past the limit")
    assert s.alive(s.plain_old)
