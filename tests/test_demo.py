"""``pgrunbook demo`` end to end on its own embedded server, and the EXPLAIN summary it
prints (``pgrunbook.explainplan``) on the fixtures' server."""

from __future__ import annotations

import json
import re
import stat
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

import psycopg
import pytest
from psycopg import sql
from psycopg.pq import TransactionStatus

from pgrunbook.change.engine import open_context
from pgrunbook.change.steps import STEP_IDS
from pgrunbook.change.steps.roles import read_env_file
from pgrunbook.cli.main import run
from pgrunbook.connect import connect
from pgrunbook.demo import PASSWORDS_FILE, RoomHistory, explain_room_history, room_history_spec
from pgrunbook.dsn import ConnInfo
from pgrunbook.embedded import LocalServer
from pgrunbook.errors import PgRunbookError
from pgrunbook.explainplan import explain_analyze
from pgrunbook.profile import load_profile
from pgrunbook.reference.naming import Naming
from tests.support import APP_ROLES, execute, rows, scalar
from tests.test_discover_reference import CONSTRAINT_OF

ROOM_HISTORY_INDEX: Final = "idx_message_room_created_desc"
# The catalog's room_history query (the profile's [[queries]]) with the hot room as a literal
PRISMA_ROOM_HISTORY: Final = (
    'SELECT * FROM "public"."Message" WHERE "roomId" = \'{room}\' ORDER BY "createdAt" DESC '
    "LIMIT 50"
)
SNAKE_ROOM_HISTORY: Final = (
    'SELECT * FROM "public"."messages" WHERE "room_id" = \'{room}\' ORDER BY "created_at" DESC '
    "LIMIT 50"
)
# The hot room, counted here as the sampler should: most messages, ties to the smallest id
HOT_ROOM_SQL: Final = (
    "SELECT {room}, count(*) FROM {messages} WHERE {room} IS NOT NULL"
    " GROUP BY {room} ORDER BY count(*) DESC, {room} LIMIT 1"
)
# The seed's injected rows past the retention policies at --scale tiny (seed 42), either
# naming: what the demo's cleanup dry run must count.
EXPECTED_TOKENS: Final = 748
EXPECTED_NOTIFICATIONS: Final = 931
VALIDATED_CHECKS_SQL: Final = (
    "SELECT count(*) FROM pg_constraint WHERE contype = 'c' AND convalidated"
    " AND starts_with(conname, 'chk_')"
)


def _demo(data_dir: Path, *extra: str) -> list[str]:
    return ["demo", "--data-dir", str(data_dir), "--scale", "tiny", *extra]


def _passwords(path: Path) -> dict[str, str]:
    return read_env_file(path, load_profile().roles)


def _login(server: LocalServer, role: str, password: str) -> object:
    info = server.dsn("ali_demo", user=role).with_params(password=password)
    return scalar(info, "SELECT current_user")


def _hot_room(info: ConnInfo, naming: Naming) -> tuple[str, int]:
    query = sql.SQL(HOT_ROOM_SQL).format(
        room=sql.Identifier(naming.column("roomId")),
        messages=sql.Identifier(naming.table("Message")),
    )
    room, count = rows(info, query)[0]
    return str(room), int(count)  # type: ignore[call-overload]


def _applied(document: dict[str, Any]) -> dict[str, int]:
    return {
        step["step"]: len([a for a in step["applied"] if a["skipped"] is None])
        for step in document["apply"]["steps"]
    }


def _check_runbook(document: dict[str, Any], server: LocalServer) -> dict[str, str]:
    """The apply, fixes, verify and explain sections of one demo run; its passwords."""
    info = server.dsn("ali_demo")
    apply = document["apply"]
    assert [s["step"] for s in apply["steps"]] == list(STEP_IDS)
    assert apply["refused"] == 0 and apply["dry_run"] is False
    applied = _applied(document)
    assert applied["indexes"] == 15 and all(applied.values())
    assert scalar(info, VALIDATED_CHECKS_SQL) == 12

    defects = document["defects_found_by_sql"]
    fixed = {f["constraint"]: f["rows_changed"] for f in document["fixes"] if f["rows_changed"]}
    assert fixed == {name: defects[kind] for kind, name in CONSTRAINT_OF.items() if defects[kind]}
    assert all(f["audit_rows"] == f["rows_changed"] for f in document["fixes"])

    verify = document["verify"]
    assert verify["passed"] is True
    assert [c for c in verify["checks"] if not c["passed"]] == []
    assert {c["step"] for c in verify["checks"]} == set(STEP_IDS)
    role_checks = [c for c in verify["checks"] if c["name"].endswith(" privileges")]
    assert {c["details"]["method"] for c in role_checks} == {"login"}  # with the file's passwords

    # the catalog's room_history query for the hot room, before and after, as --compare
    explain = document["explain"]
    room, messages = _hot_room(info, Naming.PRISMA)
    assert (explain["name"], explain["variant"]) == ("room_history", "hot")
    assert explain["expected_index"] == ROOM_HISTORY_INDEX
    assert explain["sql"] == PRISMA_ROOM_HISTORY.format(room=room)
    assert explain["params"] == {"room_id": room}
    assert explain["param_notes"] == {
        "room_id": f"hot: the Message.roomId with the most rows ({messages:,})"
    }
    assert explain["runs"] == 3
    assert explain["passed_before"] is False and ROOM_HISTORY_INDEX not in explain["before_indexes"]
    assert explain["passed_after"] is True and explain["after_indexes"] == [ROOM_HISTORY_INDEX]
    assert explain["plan_changed"] is True
    assert explain["after_path"] == ["Limit", f"Index Scan using {ROOM_HISTORY_INDEX} on Message"]
    assert explain["after_shape"] == f"Index Scan using {ROOM_HISTORY_INDEX}"
    assert "Sort" in explain["before_path"]  # no index gives the room's rows in createdAt order
    assert explain["before_shape"].endswith(" + Sort")
    assert explain["before_ms"] > 0 and explain["after_ms"] > 0
    assert explain["before_buffers"] > 0 and explain["after_buffers"] > 0
    assert explain["speedup"] == pytest.approx(
        explain["before_ms"] / explain["after_ms"], rel=0.05, abs=0.06
    )

    path = Path(document["passwords_file"])
    assert path == server.data_dir / PASSWORDS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(document["roles_created"]) == sorted(APP_ROLES)
    passwords = _passwords(path)
    assert set(passwords) == set(APP_ROLES)
    for role, password in passwords.items():
        assert _login(server, role, password) == role
    return passwords


def _check_ending(document: dict[str, Any], server: LocalServer) -> None:
    """The demo ends with the cleanup dry run and the monthly maintenance, run for real."""
    info = server.dsn("ali_demo")
    anomalies, rows = document["seed"]["anomalies"], document["seed"]["rows"]
    cleanup = document["cleanup_dry_run"]
    assert cleanup["skipped"] == []
    assert [(p["policy"], p["table"], p["rows"]) for p in cleanup["policies"]] == [
        ("expired_refresh_tokens", "public.RefreshToken", EXPECTED_TOKENS),
        ("read_notifications", "public.Notification", EXPECTED_NOTIFICATIONS),
    ]
    assert anomalies["refresh_tokens_expired_over_7_days"] == EXPECTED_TOKENS
    assert anomalies["read_notifications_over_30_days"] == EXPECTED_NOTIFICATIONS
    # a dry run: nothing deleted
    assert scalar(info, 'SELECT count(*) FROM "RefreshToken"') == rows["RefreshToken"]
    assert scalar(info, 'SELECT count(*) FROM "Notification"') == rows["Notification"]

    monthly = document["monthly"]
    assert (monthly["cadence"], monthly["dry_run"], monthly["passed"]) == ("monthly", False, True)
    assert monthly["database"] == "ali_demo" and monthly["snapshot_recorded"] is True
    assert [t["task"] for t in monthly["tasks"]] == ["vacuum", "unused_indexes", "bloat"]
    assert all(t["status"] == "ran" for t in monthly["tasks"])
    vacuumed = monthly["tasks"][0]["details"]["tables"]
    assert [t["table"] for t in vacuumed] == [
        "public.Message",
        "public.Notification",
        "public.GiftSend",
    ]
    last_vacuum = (
        "SELECT count(*) FROM pg_stat_user_tables WHERE last_vacuum IS NOT NULL"
        " AND relname IN ('Message', 'Notification', 'GiftSend')"
    )
    assert scalar(info, last_vacuum) == 3
    unused = {f["object"] for f in monthly["tasks"][1]["details"]["findings"]}
    assert f"public.{ROOM_HISTORY_INDEX}" in unused  # just built: statistics too young
    assert scalar(info, "SELECT count(*) FROM pgrunbook.snapshots WHERE cadence = 'monthly'") == 1


def test_demo_end_to_end_and_again(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data_dir = tmp_path / "demo"
    code = run(_demo(data_dir, "--json", "--keep"))
    captured = capsys.readouterr()
    document = json.loads(captured.out)
    server = LocalServer(data_dir)
    try:
        assert code == 0
        assert server.is_running()
        assert document["defects_found_by_sql"]["self_gifts"] == 4
        assert document["seed"]["rows"]["Message"] == 10_000
        assert len(document["tables"]) == 12
        findings = document["discovery"]["findings"]
        dead = [f["object"] for f in findings if f["check"] == "dead_tuples"]
        assert dead == ["public.Wallet"]
        assert len(document["discovery"]["facts"]["tables"]) == 12
        assert document["dsn"] == server.dsn("ali_demo").display()
        self_follows = document["defects_found_by_sql"]["self_follows"]
        assert self_follows > 0  # deleted by the fix of chk_follow_not_self
        assert (
            scalar(server.dsn("ali_demo"), 'SELECT count(*) FROM "Follow"')
            == document["seed"]["rows"]["Follow"] - self_follows
        )
        first = _check_runbook(document, server)
        _check_ending(document, server)
        for password in first.values():
            assert password not in captured.out and password not in captured.err

        # again, on the running server: a fresh database, the roles dropped and made anew
        code = run(_demo(data_dir, "--json", "--keep"))
        captured = capsys.readouterr()
        again = json.loads(captured.out)
        assert code == 0
        second = _check_runbook(again, server)
        assert again["fixes"] == document["fixes"]
        for role, password in second.items():
            assert password != first[role]
            assert password not in captured.out and password not in captured.err
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            _login(server, "app_user", first["app_user"])

        # a demo role holding something outside the demo database is not the demo's to drop
        postgres = server.dsn("postgres")
        execute(postgres, "CREATE TABLE kept_by_hand (); GRANT SELECT ON kept_by_hand TO app_user")
        assert run(_demo(data_dir, "--keep")) == 2
        err = " ".join(capsys.readouterr().err.split())
        assert "cannot drop the demo role app_user left by an earlier run" in err
        assert "DROP OWNED BY app_user" in err
        assert not (data_dir / PASSWORDS_FILE).exists()  # its passwords no longer log in
    finally:
        assert run(["demo", "--data-dir", str(data_dir), "--stop"]) == 0
    assert not server.is_running()


def test_demo_human_output_snake_case_stops_the_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "demo"
    assert run(_demo(data_dir, "--naming", "snake")) == 0
    captured = capsys.readouterr()
    out = " ".join(captured.out.split())  # the terminal width wraps long lines
    assert "pgrunbook discover: database ali_demo, schema public" in out
    assert "public.wallets" in out and "dead tuples" in out
    assert "pgrunbook discover *" in out and "pgrunbook apply indexes" in out
    assert "The runbook's scripts 02-06 applied online in" in out
    assert re.search(r"chk_follow_not_self (\d+) \1 deleted", out)
    assert "verify (runbook section 5): all" in out and "checks passed" in out
    room = re.escape(SNAKE_ROOM_HISTORY).replace(re.escape("{room}"), "[0-9a-f-]{36}")
    assert re.search(room, out)
    assert re.search(
        r"room_id = [0-9a-f-]{36} \(hot: the messages\.room_id with the most rows", out
    )
    assert f"after: Limit > Index Scan using {ROOM_HISTORY_INDEX} on messages" in out
    assert re.search(r"room_history hot [\d,.]+ [\d,.]+ [\d,.]+x ", out)
    assert (
        f"expected index {ROOM_HISTORY_INDEX}: before not used, after used; shared buffers" in out
    )
    # it ends with the cleanup dry run and the monthly maintenance
    steps = out.index("The runbook's scripts and their commands")
    cleanup = out.index("Cleanup dry run (runbook script 08, 'pgrunbook cleanup')")
    monthly = out.index("pgrunbook run monthly: database ali_demo, schema public")
    assert steps < cleanup < monthly < out.index("demo finished in")
    total = EXPECTED_TOKENS + EXPECTED_NOTIFICATIONS
    assert f"the retention policies would delete {total:,} rows; nothing was deleted" in out
    assert re.search(rf"expired_refresh_tokens public\.\S+ {EXPECTED_TOKENS:,} ", out)
    assert re.search(rf"read_notifications public\.\S+ {EXPECTED_NOTIFICATIONS:,} ", out)
    ending = out[monthly:]
    assert "VACUUM (ANALYZE) of the high-traffic tables: done" in ending
    assert re.search(r"vacuumed 3 tables: [\d,]+ dead tuples before", ending)
    for table in ("public.messages", "public.notifications", "public.gift_sends"):
        assert table in ending
    assert "Unused indexes: done" in ending and "Table and index bloat: done" in ending
    assert "all 3 tasks done" in ending
    passwords_file = data_dir / PASSWORDS_FILE
    assert f"are in {passwords_file} (mode 0600" in out
    passwords = _passwords(passwords_file)
    assert set(passwords) == set(APP_ROLES)
    for password in passwords.values():
        assert password not in captured.out and password not in captured.err
    assert not LocalServer(data_dir).is_running()


@pytest.mark.parametrize(
    ("naming", "expected"),
    [(Naming.PRISMA, PRISMA_ROOM_HISTORY), (Naming.SNAKE, SNAKE_ROOM_HISTORY)],
)
def test_explain_before_and_after_the_room_history_index(
    naming: Naming, expected: str, request: pytest.FixtureRequest
) -> None:
    info: ConnInfo = request.getfixturevalue("db" if naming is Naming.PRISMA else "snake_db")
    messages, room_id = naming.table("Message"), naming.column("roomId")
    room, count = _hot_room(info, naming)
    with open_context(info, load_profile()) as ctx:
        before = explain_room_history(ctx)
        ctx.conn.execute(
            sql.SQL("CREATE INDEX {} ON {} ({}, {} DESC)").format(
                sql.Identifier(ROOM_HISTORY_INDEX),
                sql.Identifier(messages),
                sql.Identifier(room_id),
                sql.Identifier(naming.column("createdAt")),
            )
        )
        after = explain_room_history(ctx, before)
    assert before.name == after.name == "room_history"
    assert before.variant == after.variant == "hot"
    # the hot room, sampled before and reused after (as --compare reuses a baseline's values)
    assert before.binding.values == after.binding.values == {"room_id": room}
    assert before.binding.notes == {
        "room_id": f"hot: the {messages}.{room_id} with the most rows ({count:,})"
    }
    assert after.binding.notes == {"room_id": "the baseline's value"}
    assert before.summary.query == after.summary.query == expected.format(room=room)
    assert (before.index_state, before.verdict, before.passed) == (
        "missing",
        "index missing",
        False,
    )
    assert not before.summary.uses(ROOM_HISTORY_INDEX)
    assert "Sort" in before.summary.path
    assert (after.index_state, after.verdict, after.passed) == ("present", "uses it", True)
    assert after.summary.indexes == (ROOM_HISTORY_INDEX,)
    assert after.summary.path == ("Limit", f"Index Scan using {ROOM_HISTORY_INDEX} on {messages}")
    assert after.summary.buffers == after.summary.shared_hit + after.summary.shared_read > 0
    compared = RoomHistory(before, after).to_json()
    assert (compared["passed_before"], compared["passed_after"]) == (False, True)
    assert compared["plan_changed"] is True
    assert compared["params"] == {"room_id": room}


def test_the_demo_needs_the_room_history_query_in_the_profile() -> None:
    profile = load_profile()
    assert room_history_spec(profile).name == "room_history"
    without = replace(
        profile, queries=tuple(q for q in profile.queries if q.name != "room_history")
    )
    with pytest.raises(
        PgRunbookError, match=f"has no \\[\\[queries\\]\\] entry for {ROOM_HISTORY_INDEX}"
    ):
        room_history_spec(without)


def test_explain_analyze_runs_in_a_rolled_back_transaction(db: ConnInfo) -> None:
    count = 'SELECT count(*) FROM "Notification"'
    rows = scalar(db, count)
    assert rows
    with connect(db, autocommit=True) as conn:
        deleted = explain_analyze(conn, sql.SQL('DELETE FROM "Notification"'))
        assert conn.info.transaction_status == TransactionStatus.IDLE
    assert deleted.node_type == "ModifyTable"
    assert deleted.query == 'DELETE FROM "Notification"'
    assert scalar(db, count) == rows  # it really ran (ANALYZE), and was rolled back


def test_explain_analyze_gives_up_behind_a_lock(db: ConnInfo) -> None:
    with psycopg.connect(db.conninfo()) as holder, connect(db, autocommit=True) as conn:
        holder.execute('LOCK TABLE "Message" IN ACCESS EXCLUSIVE MODE')
        with pytest.raises(PgRunbookError, match="lock timeout") as raised:
            explain_analyze(conn, sql.SQL('SELECT * FROM "Message" LIMIT 1'), lock_timeout_ms=50)
        assert 'SELECT * FROM "Message" LIMIT 1' in str(raised.value)
        assert conn.info.transaction_status == TransactionStatus.IDLE
