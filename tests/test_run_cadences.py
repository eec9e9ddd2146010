"""pgrunbook run daily|weekly|monthly|quarterly (runbook section 8) on the seeded database."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from pgrunbook import history
from pgrunbook.cadence import Cadence, execute
from pgrunbook.cadence.review import growth
from pgrunbook.cleanup import run_cleanup
from pgrunbook.cli.main import cli, run
from pgrunbook.cli.run_cmd import run_cmd
from pgrunbook.dsn import ConnInfo
from pgrunbook.history import Snapshot
from pgrunbook.locking import LockPolicy
from pgrunbook.profile import load_profile
from pgrunbook.reference import Naming
from tests.support import Template, autocommit, keys_of, retention_policies, scalar, url


@pytest.fixture(autouse=True)
def _registered(monkeypatch: pytest.MonkeyPatch) -> None:
    """``pgrunbook run`` in the CLI for these tests only (until cli/main.py registers it)."""
    monkeypatch.setitem(cli.commands, "run", run_cmd)


PASSWORD = "Sekr3t-Not-Shown"  # in the DSN only: the fixtures' superuser is trusted
TASK_KEYS = {"task", "title", "runbook", "status", "summary", "error", "seconds", "sql"}
REPORT_KEYS = {
    "cadence",
    "database",
    "dsn",
    "schema",
    "started_at",
    "dry_run",
    "passed",
    "snapshot_recorded",
    "seconds",
    "tasks",
}
SNAPSHOTS_SQL = "SELECT count(*) FROM pgrunbook.snapshots"
SNAPSHOTS_EXIST_SQL = "SELECT to_regclass('pgrunbook.snapshots') IS NOT NULL"
MiB = 1024 * 1024


def _run(capsys: pytest.CaptureFixture[str], info: ConnInfo, *args: str) -> dict[str, Any]:
    code = run(["run", *args, "--dsn", url(info), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    document: dict[str, Any] = json.loads(out)
    return document


def _task(document: dict[str, Any], task_id: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [t for t in document["tasks"] if t["task"] == task_id]
    assert len(found) == 1, [t["task"] for t in document["tasks"]]
    return found[0]


def _manifest(templates: dict[Naming, Template], naming: Naming) -> dict[str, Any]:
    return templates[naming].report.anomalies


def test_daily_deletes_exactly_the_expired_tokens(
    db: ConnInfo, templates: dict[Naming, Template], capsys: pytest.CaptureFixture[str]
) -> None:
    expected = _manifest(templates, Naming.PRISMA)["refresh_tokens_expired_over_7_days"]
    with autocommit(db) as conn:
        policies = retention_policies(conn)
        tokens, notes = policies["expired_refresh_tokens"], policies["read_notifications"]
        everything, doomed = keys_of(conn, tokens, False), keys_of(conn, tokens, True)
        notifications = keys_of(conn, notes, False)
    assert len(doomed) == expected > 0

    first = _run(capsys, db, "daily")
    assert set(first) == REPORT_KEYS and first["passed"] is True
    assert [t["task"] for t in first["tasks"]] == ["cleanup"]
    [done] = _task(first, "cleanup")["details"]["policies"]
    assert (done["policy"], done["deleted"], done["interrupted"]) == (
        "expired_refresh_tokens",
        expected,
        False,
    )
    with autocommit(db) as conn:
        assert keys_of(conn, tokens, False) == everything - doomed
        assert keys_of(conn, notes, False) == notifications  # weekly's policy: untouched

    again = _run(capsys, db, "daily", "--batch-size", "3")
    assert _task(again, "cleanup")["details"]["policies"][0]["deleted"] == 0
    assert scalar(db, SNAPSHOTS_SQL) == 2
    sources = "SELECT DISTINCT source FROM pgrunbook.snapshots"
    assert scalar(db, sources) == "pgrunbook run"
    assert scalar(db, "SELECT count(*) FROM pgrunbook.snapshots WHERE cadence = 'daily'") == 2


def test_weekly_analyzes_and_deletes_old_read_notifications(
    snake_db: ConnInfo, templates: dict[Naming, Template], capsys: pytest.CaptureFixture[str]
) -> None:
    expected = _manifest(templates, Naming.SNAKE)["read_notifications_over_30_days"]
    with autocommit(snake_db) as conn:
        conn.execute("CREATE TABLE never_analyzed (id int PRIMARY KEY)")
        conn.execute("INSERT INTO never_analyzed SELECT generate_series(1, 100)")
        policies = retention_policies(conn)
        notes, tokens = policies["read_notifications"], policies["expired_refresh_tokens"]
        everything, doomed = keys_of(conn, notes, False), keys_of(conn, notes, True)
        token_ids = keys_of(conn, tokens, False)
    analyzed = (
        "SELECT count(*) FILTER (WHERE last_analyze IS NOT NULL), count(*) "
        "FROM pg_stat_user_tables WHERE schemaname = 'public'"
    )
    never = "SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'never_analyzed'"
    assert scalar(snake_db, never) is None
    assert len(doomed) == expected > 0

    document = _run(capsys, snake_db, "weekly")
    assert [t["task"] for t in document["tasks"]] == ["analyze", "cleanup"]
    analyze = _task(document, "analyze")
    assert 'ANALYZE "public"."never_analyzed"' in analyze["sql"]
    assert 'ANALYZE "public"."notifications"' in analyze["sql"]
    tables = int(scalar(snake_db, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"))  # type: ignore[call-overload]
    assert len(analyze["details"]["tables"]) == tables == 13
    assert scalar(snake_db, never) is not None
    with autocommit(snake_db) as conn:
        assert conn.execute(analyzed).fetchone() == (tables, tables)
    [cleaned] = _task(document, "cleanup")["details"]["policies"]
    assert (cleaned["policy"], cleaned["deleted"]) == ("read_notifications", expected)
    with autocommit(snake_db) as conn:
        assert keys_of(conn, notes, False) == everything - doomed
        assert keys_of(conn, tokens, False) == token_ids  # daily's policy: untouched


CHURN_SQL = 'UPDATE {} SET "id" = "id"'  # every row rewritten: one dead tuple each
DEAD_SQL = "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = %s"


def test_monthly_vacuums_and_reports_unused_indexes_and_bloat(
    db: ConnInfo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    churned: dict[str, int] = {}
    with autocommit(db) as conn:
        for table in ("Message", "Notification", "GiftSend"):
            churned[table] = conn.execute(sql.SQL(CHURN_SQL).format(sql.Identifier(table))).rowcount
        conn.execute('CREATE INDEX run_test_unused_idx ON "Message" ("createdAt", "id")')
        conn.execute("SELECT pg_stat_force_next_flush()")
    for table, rows in churned.items():
        assert rows > 0
        assert scalar(db, DEAD_SQL, (table,)) >= rows  # type: ignore[operator]

    report = tmp_path / "monthly.md"
    secret = db.with_params(password=PASSWORD)
    code = run(["run", "monthly", "--dsn", url(secret), "--output", str(report)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert PASSWORD not in out + err
    assert "VACUUM (ANALYZE) of the high-traffic tables: done" in out
    assert "all 3 tasks done" in out and f"report written to {report}" in " ".join(out.split())

    for table in churned:
        assert scalar(db, DEAD_SQL, (table,)) == 0
    markdown = report.read_text()
    assert PASSWORD not in markdown
    assert markdown.startswith("# pgrunbook run monthly: ")
    for heading in (
        "## VACUUM (ANALYZE) of the high-traffic tables",
        "## Unused indexes",
        "## Table and index bloat",
    ):
        assert f"\n{heading}\n" in markdown
    assert "| public.run_test_unused_idx | public.Message |" in markdown
    assert 'VACUUM (ANALYZE) "public"."GiftSend";' in markdown
    assert "> Runbook section 8, Monthly: check for unused indexes" in markdown

    document = _run(capsys, db, "monthly")  # again: JSON, nothing dead left
    vacuum = _task(document, "vacuum")
    assert [t["table"] for t in vacuum["details"]["tables"]] == [
        "public.Message",
        "public.Notification",
        "public.GiftSend",
    ]
    assert all(t["after"]["dead_tuples"] == 0 for t in vacuum["details"]["tables"])
    unused = _task(document, "unused_indexes")["details"]["findings"]
    assert "public.run_test_unused_idx" in [f["object"] for f in unused]
    bloat = _task(document, "bloat")
    assert bloat["status"] == "ran" and bloat["details"]["check"]["status"] == "ran"
    assert scalar(db, "SELECT count(*) FROM pgrunbook.snapshots WHERE cadence = 'monthly'") == 2


def test_quarterly_review_growth_and_retention_yields(
    db: ConnInfo,
    templates: dict[Naming, Template],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    manifest = _manifest(templates, Naming.PRISMA)
    now = datetime.now(UTC).replace(microsecond=0)
    with autocommit(db) as conn:
        history.ensure(conn)
        for days, size in ((200, 1), (60, 100_000_000), (30, 130_000_000)):
            conn.execute(
                "INSERT INTO pgrunbook.snapshots (taken_at, cadence, source, database_bytes,"
                " tables) VALUES (%s, 'monthly', 'pg_cron', %s, '{}')",
                (now - timedelta(days=days), size),
            )
        tokens = retention_policies(conn)["expired_refresh_tokens"]
        assert (
            run_cleanup(conn, tokens, batch_size=50).deleted
            == (manifest["refresh_tokens_expired_over_7_days"])
        )
        conn.execute(  # a run older than the review's 90 days does not count
            "INSERT INTO pgrunbook.cleanup_runs (policy, table_name, predicate, deleted,"
            " batches, batch_size, interrupted, seconds, finished_at, tool_version)"
            " VALUES ('expired_refresh_tokens', 't', 'p', 999, 1, 1, false, 1,"
            " now() - interval '100 days', 'x')"
        )

    output = tmp_path / "quarterly.json"
    document = _run(capsys, db, "quarterly", "--plan-limit", "1024", "--output", str(output))
    assert json.loads(output.read_text())["tasks"] == document["tasks"]
    assert set(document) == REPORT_KEYS and document["cadence"] == "quarterly"
    assert [t["task"] for t in document["tasks"]] == [
        "slow_queries",
        "index_bloat",
        "storage_growth",
        "retention",
    ]
    for task in document["tasks"]:
        assert set(task) >= TASK_KEYS and task["status"] == "ran"

    growth = _task(document, "storage_growth")["details"]
    assert growth["snapshots"] == 2  # the one 200 days ago is outside the window
    assert growth["oldest"]["database_bytes"] == 100_000_000
    assert growth["newest"]["database_bytes"] == 130_000_000
    assert growth["bytes_per_day"] == pytest.approx(1_000_000.0)
    assert growth["limit_bytes"] == 1024 * MiB
    assert growth["days_until_limit"] == pytest.approx(
        (1024 * MiB - growth["database_bytes"]) / 1_000_000
    )
    assert "per day" in _task(document, "storage_growth")["summary"]

    retention = {p["policy"]: p for p in _task(document, "retention")["details"]["policies"]}
    assert retention["expired_refresh_tokens"]["runs"] == 1
    assert (
        retention["expired_refresh_tokens"]["deleted"]
        == (manifest["refresh_tokens_expired_over_7_days"])
    )
    assert retention["expired_refresh_tokens"]["would_delete_now"] == 0
    assert (
        retention["read_notifications"]["runs"],
        retention["read_notifications"]["deleted"],
    ) == (0, 0)
    assert (
        retention["read_notifications"]["would_delete_now"]
        == (manifest["read_notifications_over_30_days"])
    )

    slow = _task(document, "slow_queries")
    if not slow["details"]["facts"].get("available"):  # the clone has no pg_stat_statements
        assert "CREATE EXTENSION pg_stat_statements" in slow["summary"] + " ".join(slow["notes"])
    assert _task(document, "index_bloat")["details"]["check"]["id"] == "bloat"
    assert scalar(db, SNAPSHOTS_SQL) == 4  # this run's own, after the three inserted


def test_dry_run_changes_nothing(
    db: ConnInfo, templates: dict[Naming, Template], capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = _manifest(templates, Naming.PRISMA)
    counts = 'SELECT (SELECT count(*) FROM "RefreshToken"), (SELECT count(*) FROM "Notification")'
    with autocommit(db) as conn:
        before = conn.execute(counts).fetchone()
    vacuumed = "SELECT last_vacuum, last_analyze FROM pg_stat_user_tables WHERE relname = 'Message'"
    stats_before = scalar(db, vacuumed)

    daily = _run(capsys, db, "daily", "--dry-run")
    [plan] = _task(daily, "cleanup")["details"]["policies"]
    assert plan["rows"] == manifest["refresh_tokens_expired_over_7_days"]
    assert daily["dry_run"] is True and daily["snapshot_recorded"] is False
    assert _task(daily, "cleanup")["status"] == "dry_run"

    weekly = _run(capsys, db, "weekly", "--dry-run")
    assert 'ANALYZE "public"."Message"' in _task(weekly, "analyze")["sql"]
    [plan] = _task(weekly, "cleanup")["details"]["policies"]
    assert plan["rows"] == manifest["read_notifications_over_30_days"]

    monthly = _run(capsys, db, "monthly", "--dry-run")
    assert 'VACUUM (ANALYZE) "public"."Message"' in _task(monthly, "vacuum")["sql"]

    with autocommit(db) as conn:
        assert conn.execute(counts).fetchone() == before
    assert scalar(db, vacuumed) == stats_before
    assert scalar(db, SNAPSHOTS_EXIST_SQL) is False  # not even created


def test_a_failed_task_exits_1_and_says_which(
    db: ConnInfo, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(
        execute, "ANALYZE_LOCKS", LockPolicy(lock_timeout_ms=20, budget_seconds=0.2)
    )
    with autocommit(db) as holder, holder.transaction():
        holder.execute('LOCK TABLE "Message" IN SHARE UPDATE EXCLUSIVE MODE')  # as a VACUUM
        code = run(["run", "weekly", "--dsn", url(db), "--json"])
    out, err = capsys.readouterr()
    assert code == 1
    document = json.loads(out)
    assert document["passed"] is False
    analyze = _task(document, "analyze")
    assert analyze["status"] == "failed"
    assert "gave up on analyzing public.Message" in analyze["error"]
    assert _task(document, "cleanup")["status"] == "ran"  # the next task still ran
    assert "failed: ANALYZE (update statistics): gave up on analyzing public.Message" in " ".join(
        err.split()
    )


def test_bad_cadence_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["run", "hourly"]) == 2
    assert "'hourly' is not one of" in capsys.readouterr().err


def test_ctrl_c_marks_the_task_interrupted_and_stops(db: ConnInfo) -> None:
    def ctrl_c(text: str) -> None:  # the cleanup logs before each policy: Ctrl-C lands there
        raise KeyboardInterrupt

    report = execute.run_cadence(db, Cadence.WEEKLY, load_profile(), log=ctrl_c)
    assert [(t.id, t.status) for t in report.tasks] == [
        ("analyze", "ran"),
        ("cleanup", "interrupted"),
    ]
    assert report.exit_code == 1 and report.problems == [report.tasks[1]]
    assert report.snapshot_recorded is False
    assert scalar(db, SNAPSHOTS_EXIST_SQL) is False


def _snapshot(days_ago: float, size: int, now: datetime) -> Snapshot:
    return Snapshot(now - timedelta(days=days_ago), "daily", "pgrunbook run", size)


def test_growth_needs_two_snapshots_a_day_apart_and_projects_the_limit() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    history_ = [_snapshot(95, 1, now), _snapshot(10, 1_000, now), _snapshot(0, 11_000, now)]
    found = growth(history_, now=now, current_bytes=11_000, limit_bytes=31_000, window_days=90)
    assert (found.snapshots, found.bytes_per_day, found.days_until_limit) == (2, 1_000.0, 20.0)
    full = growth(history_, now=now, current_bytes=40_000, limit_bytes=31_000, window_days=90)
    assert full.days_until_limit == 0.0
    no_limit = growth(history_, now=now, current_bytes=11_000, limit_bytes=None, window_days=90)
    assert no_limit.days_until_limit is None and no_limit.bytes_per_day == 1_000.0
    close = [_snapshot(0.5, 1_000, now), _snapshot(0, 2_000, now)]
    too_close = growth(close, now=now, current_bytes=2_000, limit_bytes=9_000, window_days=90)
    assert (too_close.bytes_per_day, too_close.days_until_limit) == (None, None)
    shrinking = [_snapshot(2, 5_000, now), _snapshot(0, 4_000, now)]
    down = growth(shrinking, now=now, current_bytes=4_000, limit_bytes=9_000, window_days=90)
    assert (down.bytes_per_day, down.days_until_limit) == (-500.0, None)


def test_a_database_without_the_apps_tables(
    empty_db: ConnInfo, capsys: pytest.CaptureFixture[str]
) -> None:
    daily = _run(capsys, empty_db, "daily")
    cleanup = _task(daily, "cleanup")
    assert cleanup["summary"] == "no retention policy with cadence daily applies here"
    assert cleanup["notes"] == ["skipped expired_refresh_tokens: table 'RefreshToken' not found"]
    monthly = _run(capsys, empty_db, "monthly")
    assert _task(monthly, "vacuum")["notes"] == [
        f"no {name} table in schema public" for name in ("Message", "Notification", "GiftSend")
    ]
    assert scalar(empty_db, SNAPSHOTS_SQL) == 2

    assert run(["run", "weekly", "--dsn", url(empty_db), "--schema", "nope"]) == 2
    assert "schema 'nope' does not exist" in capsys.readouterr().err
