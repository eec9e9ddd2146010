"""``pgrunbook doctor``: the run-all diagnosis, ``--fix`` for invalid indexes, idle pressure."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from psycopg import errors

from pgrunbook.cli.main import run
from pgrunbook.doctor import CHECKS, apply_repairs, diagnose, plan_repairs
from pgrunbook.doctor.pressure import Thresholds, idle_findings
from pgrunbook.dsn import MASK, ConnInfo
from pgrunbook.findings import Severity
from pgrunbook.locking import LockPolicy
from tests.support import (
    PgServer,
    execute,
    leave_failed_reindex_copy,
    leave_failed_unique_build,
    rows,
    scalar,
)

DEFINITION = "CREATE UNIQUE INDEX account_email_key ON public.account USING btree (email)"
INVALID_SQL = "SELECT indexrelid::regclass::text FROM pg_index WHERE NOT indisvalid"


def url(info: ConnInfo) -> str:
    if info.password is None:
        return info.display()
    return info.display().replace(MASK, quote(info.password, safe=""), 1)


def doctor(
    capsys: pytest.CaptureFixture[str], info: ConnInfo, *args: str
) -> tuple[int, dict[str, Any], str]:
    code = run(["doctor", "--dsn", url(info), "--json", *args])
    out, err = capsys.readouterr()
    document: dict[str, Any] = json.loads(out) if out else {}
    return code, document, err


def index_oid(info: ConnInfo, name: str) -> object:
    return scalar(info, "SELECT to_regclass(%s)::oid", (name,))


@pytest.fixture
def invalid_unique(empty_db: ConnInfo) -> ConnInfo:
    """A table with a duplicated email and the invalid index a failed unique build left."""
    leave_failed_unique_build(empty_db)
    assert rows(empty_db, INVALID_SQL) == [("account_email_key",)]
    return empty_db


# --fix ---------------------------------------------------------------------------------


def test_fix_rebuilds_the_index_once_the_duplicates_are_gone(
    capsys: pytest.CaptureFixture[str], invalid_unique: ConnInfo
) -> None:
    before = index_oid(invalid_unique, "account_email_key")
    execute(invalid_unique, "DELETE FROM account WHERE id = 2")

    code, document, _ = doctor(capsys, invalid_unique, "--fix", "--yes")

    assert code == 0
    [repair] = document["fixed"]
    assert repair == {
        "object": "public.account_email_key",
        "table": "public.account",
        "action": "rebuild",
        "status": "rebuilt",
        "reason": None,
        "definition": DEFINITION,
        "sql": [
            'DROP INDEX CONCURRENTLY IF EXISTS "public"."account_email_key";',
            "CREATE UNIQUE INDEX CONCURRENTLY account_email_key ON public.account "
            "USING btree (email);",
        ],
        "leftover": False,
    }
    # The invalid index was a finding (found before the fix), and it is fixed now.
    assert [f["object"] for f in document["findings"] if f["check"] == "invalid_indexes"] == [
        "public.account_email_key"
    ]
    assert rows(invalid_unique, INVALID_SQL) == []
    assert index_oid(invalid_unique, "account_email_key") not in (None, before)
    assert scalar(invalid_unique, "SELECT pg_get_indexdef('account_email_key'::regclass)") == (
        DEFINITION
    )
    # Run again: nothing left to find or fix.
    code, document, _ = doctor(capsys, invalid_unique, "--fix", "--yes")
    assert (code, document["fixed"]) == (0, [])


def test_fix_fails_cleanly_while_the_duplicates_are_there(
    capsys: pytest.CaptureFixture[str], invalid_unique: ConnInfo
) -> None:
    code = run(["doctor", "--dsn", url(invalid_unique), "--fix", "--yes"])
    out, _ = capsys.readouterr()

    assert code == 1
    [line] = [line for line in out.splitlines() if line.startswith("failed ")]
    assert line == (
        'failed public.account_email_key: could not create unique index "account_email_key" '
        "(Key (email)=(a@x.io) is duplicated); no invalid index is left; "
        f"recorded definition: {DEFINITION}"
    )
    # No invalid index stays behind: neither the old one nor the failed rebuild's.
    assert rows(invalid_unique, INVALID_SQL) == []
    assert index_oid(invalid_unique, "account_email_key") is None


def test_failed_fix_in_json_keeps_the_definition(
    capsys: pytest.CaptureFixture[str], invalid_unique: ConnInfo
) -> None:
    code, document, _ = doctor(capsys, invalid_unique, "--fix", "--yes")
    assert code == 1
    [repair] = document["fixed"]
    assert repair["status"] == "failed"
    assert repair["definition"] == DEFINITION
    assert repair["leftover"] is False
    assert "is duplicated" in repair["reason"]


def test_dry_run_prints_the_sql_and_changes_nothing(
    capsys: pytest.CaptureFixture[str], invalid_unique: ConnInfo
) -> None:
    before = index_oid(invalid_unique, "account_email_key")
    code = run(["doctor", "--dsn", url(invalid_unique), "--fix", "--dry-run"])
    out = capsys.readouterr().out
    assert code == 1
    text = " ".join(out.split())
    assert 'DROP INDEX CONCURRENTLY IF EXISTS "public"."account_email_key";' in text
    assert (
        "CREATE UNIQUE INDEX CONCURRENTLY account_email_key ON public.account USING btree "
        "(email);" in text
    )
    assert index_oid(invalid_unique, "account_email_key") == before
    assert rows(invalid_unique, INVALID_SQL) == [("account_email_key",)]

    code, document, _ = doctor(capsys, invalid_unique, "--fix", "--dry-run")
    assert code == 1
    assert [(r["object"], r["status"]) for r in document["fixed"]] == [
        ("public.account_email_key", "planned")
    ]
    assert index_oid(invalid_unique, "account_email_key") == before


def test_fix_without_yes_refuses_when_not_interactive(
    capsys: pytest.CaptureFixture[str], invalid_unique: ConnInfo
) -> None:
    before = index_oid(invalid_unique, "account_email_key")
    code = run(["doctor", "--dsn", url(invalid_unique), "--fix"])
    err = capsys.readouterr().err
    assert code == 2
    assert "needs confirmation" in err and "--yes" in err
    assert index_oid(invalid_unique, "account_email_key") == before


def test_invalid_copy_of_a_valid_index_is_only_dropped(empty_db: ConnInfo) -> None:
    # A failed REINDEX CONCURRENTLY leaves event_norm_idx_ccnew, an invalid copy of a valid
    # index: recreating it would make a duplicate.
    leave_failed_reindex_copy(empty_db)
    assert rows(empty_db, INVALID_SQL) == [("event_norm_idx_ccnew",)]

    with psycopg.connect(empty_db.conninfo(), autocommit=True) as conn:
        [repair] = plan_repairs(conn, "public")
        assert (repair.action, repair.index.valid_twin) == ("drop", "event_norm_idx")
        assert repair.sql == ['DROP INDEX CONCURRENTLY IF EXISTS "public"."event_norm_idx_ccnew";']
        apply_repairs(conn, [repair])

    assert (repair.status, repair.fixed) == ("dropped", True)
    assert rows(empty_db, INVALID_SQL) == []
    assert rows(
        empty_db,
        "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = "
        "'event'::regclass ORDER BY 1",
    ) == [("event_norm_idx",), ("event_pkey",)]


def test_rebuild_failing_in_an_expression_leaves_nothing_invalid(empty_db: ConnInfo) -> None:
    """Any failure of the rebuild (here a function that raises) is one line, no leftover."""
    execute(
        empty_db,
        "CREATE FUNCTION norm(int) RETURNS int IMMUTABLE LANGUAGE plpgsql AS $$ BEGIN"
        " IF $1 < 0 THEN RAISE 'negative: %', $1; END IF; RETURN $1; END $$;"
        "CREATE TABLE event (id int PRIMARY KEY, a int);"
        "INSERT INTO event VALUES (1, -5);",
    )
    with (
        psycopg.connect(empty_db.conninfo(), autocommit=True) as conn,
        pytest.raises(errors.RaiseException),
    ):
        conn.execute("CREATE INDEX CONCURRENTLY event_norm_idx ON event (norm(a))")
    with psycopg.connect(empty_db.conninfo(), autocommit=True) as conn:
        [repair] = apply_repairs(conn, plan_repairs(conn, "public"))
    assert (repair.status, repair.reason) == ("failed", "negative: -5")
    assert rows(empty_db, INVALID_SQL) == []


@contextmanager
def table_locked(info: ConnInfo, seconds: float) -> Iterator[None]:
    """Another session holds a lock that conflicts with CONCURRENTLY for ``seconds``."""
    holder = psycopg.connect(info.conninfo())
    holder.execute("LOCK TABLE account IN SHARE UPDATE EXCLUSIVE MODE")
    release = threading.Timer(seconds, holder.commit)
    release.start()
    try:
        yield
    finally:
        release.join()
        holder.close()


def test_fix_waits_for_the_lock_with_retries(invalid_unique: ConnInfo) -> None:
    execute(invalid_unique, "DELETE FROM account WHERE id = 2")
    policy = LockPolicy(lock_timeout_ms=50, first_delay=0.05, max_delay=0.1, budget_seconds=30)
    notes: list[str] = []
    with (
        psycopg.connect(invalid_unique.conninfo(), autocommit=True) as conn,
        table_locked(invalid_unique, 0.6),
    ):
        [repair] = apply_repairs(
            conn, plan_repairs(conn, "public"), policy=policy, on_note=notes.append
        )
    assert repair.status == "rebuilt"
    assert notes and notes[0].startswith("drop public.account_email_key: lock not free, retry 1")
    assert rows(invalid_unique, INVALID_SQL) == []


def test_fix_gives_up_when_the_lock_stays_taken(invalid_unique: ConnInfo) -> None:
    before = index_oid(invalid_unique, "account_email_key")
    policy = LockPolicy(lock_timeout_ms=50, first_delay=0.05, max_delay=0.1, budget_seconds=0.3)
    with (
        psycopg.connect(invalid_unique.conninfo(), autocommit=True) as conn,
        table_locked(invalid_unique, 1.0),
    ):
        [repair] = apply_repairs(conn, plan_repairs(conn, "public"), policy=policy)
    assert repair.status == "failed"
    assert repair.reason is not None
    assert repair.reason.startswith(
        "could not drop it: gave up on dropping public.account_email_key"
    )
    assert index_oid(invalid_unique, "account_email_key") == before  # untouched


@contextmanager
def build_waiting(info: ConnInfo) -> Iterator[None]:
    """A CREATE INDEX CONCURRENTLY waiting for an open writing transaction, while inside."""
    failures: list[BaseException] = []

    def build() -> None:
        try:
            with psycopg.connect(info.conninfo(), autocommit=True) as conn:
                conn.execute("CREATE INDEX CONCURRENTLY account_email_idx ON account (email)")
        except psycopg.Error as exc:  # reported by the test below
            failures.append(exc)

    with psycopg.connect(info.conninfo()) as writer:
        writer.execute("INSERT INTO account VALUES (10, 'c@x.io')")
        thread = threading.Thread(target=build)
        thread.start()
        deadline = time.monotonic() + 10
        while not rows(info, "SELECT 1 FROM pg_stat_progress_create_index WHERE index_relid <> 0"):
            assert time.monotonic() < deadline, "the build never started"
            time.sleep(0.05)
        try:
            yield
        finally:
            writer.rollback()
            thread.join(30)
    assert not failures


def test_a_build_in_progress_is_left_alone(invalid_unique: ConnInfo) -> None:
    with (
        build_waiting(invalid_unique),
        psycopg.connect(invalid_unique.conninfo(), autocommit=True) as conn,
    ):
        repairs = {r.object: r for r in plan_repairs(conn, "public")}
        building = repairs["public.account_email_idx"]
        assert building.status == "skipped"
        assert building.reason is not None and "is building it right now" in building.reason
        # The leftover of the failed build next to it is planned as usual.
        leftover = repairs["public.account_email_key"]
        assert leftover.status == "planned"
    # Once the build finished: the skipped one was never touched, the leftover is handled.
    with psycopg.connect(invalid_unique.conninfo(), autocommit=True) as conn:
        apply_repairs(conn, [building, leftover])
    assert [building.status, leftover.status] == ["skipped", "failed"]  # duplicates remain
    assert rows(invalid_unique, INVALID_SQL) == []
    assert index_oid(invalid_unique, "account_email_idx") == building.index.oid


# the run-all diagnosis --------------------------------------------------------------------


def test_clean_database_exits_0(capsys: pytest.CaptureFixture[str], empty_db: ConnInfo) -> None:
    execute(empty_db, "CREATE TABLE account (id int PRIMARY KEY, email text UNIQUE)")
    code, document, _ = doctor(capsys, empty_db)
    assert code == 0
    assert [f for f in document["findings"] if f["severity"] != "info"] == []
    assert document["fixed"] == []
    assert sorted(c["id"] for c in document["checks"]) == sorted([*CHECKS, "idle_sessions"])
    assert all(c["status"] == "ran" for c in document["checks"])


def test_human_report(capsys: pytest.CaptureFixture[str], invalid_unique: ConnInfo) -> None:
    code = run(["doctor", "--dsn", url(invalid_unique)])
    out = capsys.readouterr().out
    assert code == 1
    assert out.startswith(f"pgrunbook doctor: database {invalid_unique.dbname}, schema public")
    assert "public.account_email_key" in out
    assert "1 problem(s) at warning or above remain" in out


def test_reference_database_shows_what_failed_not_what_is_planned(
    capsys: pytest.CaptureFixture[str], db: ConnInfo
) -> None:
    """NOT VALID constraints and their rows, not the profile's planned ones or inferred
    relations (discover reports those)."""
    execute(
        db,
        'ALTER TABLE "Wallet" ADD CONSTRAINT chk_wallet_balance_non_negative '
        "CHECK (balance >= 0) NOT VALID;"
        'ALTER TABLE "Message" ADD CONSTRAINT message_room_fk FOREIGN KEY ("roomId") '
        'REFERENCES "Room" (id) NOT VALID;',
    )
    negative = scalar(db, 'SELECT count(*) FROM "Wallet" WHERE balance < 0')
    orphans = scalar(
        db,
        'SELECT count(*) FROM "Message" m WHERE NOT EXISTS '
        '(SELECT 1 FROM "Room" r WHERE r.id = m."roomId")',
    )
    assert isinstance(negative, int) and negative > 0
    assert isinstance(orphans, int) and orphans > 0

    code, document, _ = doctor(capsys, db)

    assert code == 1
    by_check: dict[str, list[dict[str, Any]]] = {}
    for finding in document["findings"]:
        by_check.setdefault(finding["check"], []).append(finding)
    [violation] = by_check["constraint_violations"]
    assert violation["severity"] == "warning"
    assert violation["object"] == "public.Wallet"
    assert violation["details"]["state"] == "not_valid"
    assert violation["details"]["constraint"] == "chk_wallet_balance_non_negative"
    assert violation["details"]["count"] == negative
    [orphan] = by_check["orphans"]
    assert orphan["severity"] == "warning"
    assert orphan["object"] == "public.Message"
    assert orphan["details"]["relation"]["constraint"] == "message_room_fk"
    assert orphan["details"]["count"] == orphans
    # The same run of discover also reports planned constraints and inferred relations.
    assert set(by_check) <= {"constraint_violations", "orphans", "connections", "statements"}


def test_connection_pressure_and_slow_queries(
    capsys: pytest.CaptureFixture[str],
    pg_server: PgServer,
    empty_db: ConnInfo,
    tmp_path: Path,
) -> None:
    if pg_server.local is None:
        pytest.skip("needs pg_stat_statements preloaded (the embedded server has it)")
    execute(empty_db, "CREATE EXTENSION pg_stat_statements")
    config = tmp_path / "pgrunbook.toml"
    config.write_text(
        "[checks.idle_sessions]\nidle_in_transaction_seconds = 0.5\n"
        "[checks.statements]\nslow_mean_ms = 40.0\nslow_min_calls = 3\n"
    )
    with psycopg.connect(empty_db.conninfo()) as waiting:
        for _ in range(3):
            waiting.execute("SELECT pg_sleep(0.05)")
        pid = waiting.info.backend_pid
        time.sleep(0.7)  # idle in the transaction the SELECTs opened

        code, document, _ = doctor(capsys, empty_db, "--config", str(config))

    assert code == 1
    [idle] = [f for f in document["findings"] if f["check"] == "idle_sessions"]
    assert idle["severity"] == "warning"
    assert idle["object"] == f"database {empty_db.dbname}"
    assert [s["pid"] for s in idle["details"]["sessions"]] == [pid]
    assert idle["fix"] == (
        f"ALTER DATABASE \"{empty_db.dbname}\" SET idle_in_transaction_session_timeout = '600s';"
    )
    slow = [
        f for f in document["findings"] if f["check"] == "statements" and f["severity"] == "warning"
    ]
    assert ["pg_sleep" in f["details"]["query"] for f in slow] == [True]


# idle_sessions findings (the library) ------------------------------------------------------


def test_idle_in_transaction_is_a_warning_then_critical(empty_db: ConnInfo) -> None:
    with (
        psycopg.connect(empty_db.conninfo()) as waiting,
        psycopg.connect(empty_db.conninfo(), autocommit=True) as conn,
    ):
        waiting.execute("SELECT 1")
        time.sleep(0.6)
        limits = Thresholds(idle_in_transaction_seconds=0.5, idle_seconds=3600)
        [finding] = idle_findings(conn, limits)
        assert finding.check == "idle_sessions"
        assert finding.severity is Severity.WARNING
        assert finding.object == f"database {empty_db.dbname}"
        assert finding.details["state"] == "idle in transaction"
        assert finding.details["count"] == 1
        assert finding.details["sessions"][0]["pid"] == waiting.info.backend_pid
        assert finding.details["longest_seconds"] > 0.5

        critical = Thresholds(
            idle_in_transaction_seconds=0.5, idle_in_transaction_critical_seconds=0.55
        )
        assert [f.severity for f in idle_findings(conn, critical)] == [Severity.CRITICAL]


def test_idle_sessions_are_info_until_they_hold_a_share_of_the_slots(empty_db: ConnInfo) -> None:
    with (
        psycopg.connect(empty_db.conninfo(), autocommit=True) as one,
        psycopg.connect(empty_db.conninfo(), autocommit=True) as two,
        psycopg.connect(empty_db.conninfo(), autocommit=True) as conn,
    ):
        time.sleep(0.6)
        max_connections = int(str(scalar(empty_db, "SHOW max_connections")))
        [finding] = idle_findings(conn, Thresholds(idle_seconds=0.5))
        assert finding.severity is Severity.INFO
        assert finding.details["state"] == "idle"
        assert finding.details["count"] == 2
        assert finding.details["max_connections"] == max_connections
        assert {s["pid"] for s in finding.details["sessions"]} == {
            one.info.backend_pid,
            two.info.backend_pid,
        }
        assert finding.fix == "pgrunbook doctor connections --terminate-idle 0.00833333"

        share = 2 / max_connections
        [warning] = idle_findings(conn, Thresholds(idle_seconds=0.5, idle_share_warning=share))
        assert warning.severity is Severity.WARNING


def test_no_idle_findings_on_a_quiet_database(empty_db: ConnInfo) -> None:
    with psycopg.connect(empty_db.conninfo(), autocommit=True) as conn:
        assert idle_findings(conn, Thresholds()) == []


def test_diagnose_library(invalid_unique: ConnInfo) -> None:
    report = diagnose(invalid_unique)
    assert [f.object for f in report.findings if f.check == "invalid_indexes"] == [
        "public.account_email_key"
    ]
    assert report.exit_code == 1
