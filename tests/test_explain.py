"""``pgrunbook explain`` (runbook script 10, section 5's "Performance Verification").

The main scenario runs once per naming on a ``small``-scale seeded database (the issue's
scale; made once per module): explain with ``--baseline`` before the indexes, apply the
indexes step, explain again with ``--compare``. Smaller cases use the tiny fixtures.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql

from pgrunbook.change.engine import apply_steps, open_context
from pgrunbook.change.steps import indexes
from pgrunbook.cli.explain_cmd import explain
from pgrunbook.cli.main import cli, run
from pgrunbook.dsn import ConnInfo
from pgrunbook.errors import ConfigError
from pgrunbook.explain import render_catalog
from pgrunbook.profile import load_profile
from pgrunbook.profile.load import builtin_text, parse_profile
from pgrunbook.reference import Naming
from pgrunbook.seed import seed
from tests.support import RUNBOOK_INDEXES, TEST_ANCHOR, TEST_SEED, PgServer, rows, scalar, url

SAMPLED: Final = [
    "room_history",
    "user_messages",
    "room_history_active",
    "room_gifts",
    "gifts_received",
    "gifts_sent",
    "wallet_history",
    "wallet_history_by_type",
    "room_members",
    "followers",
    "following",
    "unread_notifications",
]
FIXED: Final = ["public_rooms", "pending_reports", "expiring_refresh_tokens"]
# every query with a sampled parameter runs with the hot and the typical value
VARIANTS: Final = [(n, v) for n in SAMPLED for v in ("hot", "typical")] + [
    (n, "fixed") for n in FIXED
]
RUNS: Final = ("--runs", "2")


@dataclass
class Scenario:
    info: ConnInfo
    naming: Naming
    before: dict[str, Any]  # --json --baseline FILE, before the indexes
    before_code: int
    strict_code: int  # --fail-on-missing-index before the indexes
    after: dict[str, Any]  # --json --compare FILE, after them
    after_code: int
    baseline: dict[str, Any]  # the file --baseline wrote


def invoke(info: ConnInfo, *args: str) -> tuple[int, str]:
    """The command (not yet registered in the group) via CliRunner: exit code, stdout (a
    terminal 200 columns wide)."""
    runner = CliRunner(env={"COLUMNS": "200"})
    result = runner.invoke(explain, ["--dsn", url(info), *args], catch_exceptions=False)
    return result.exit_code, result.stdout


def by_key(document: dict[str, Any], key: str = "queries") -> dict[tuple[str, str], Any]:
    return {(q["name"], q["variant"]): q for q in document[key]}


def t(naming: Naming, name: str) -> sql.Identifier:
    return sql.Identifier(naming.table(name))


def c(naming: Naming, name: str) -> sql.Identifier:
    return sql.Identifier(naming.column(name))


@pytest.fixture(scope="module", params=[Naming.PRISMA, Naming.SNAKE], ids=["prisma", "snake"])
def scenario(
    request: pytest.FixtureRequest, pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Scenario]:
    naming: Naming = request.param
    name = f"explain_small_{naming.value}"
    pg_server.drop_database(name)
    info = pg_server.create_database(name)
    seed(info, scale="small", naming=naming, seed=TEST_SEED, anchor=TEST_ANCHOR)
    path = tmp_path_factory.mktemp("explain") / "before.json"
    before_code, before = invoke(info, "--json", *RUNS, "--baseline", str(path))
    strict_code, _ = invoke(info, "--json", "--runs", "1", "--query", "room_history",
                            "--fail-on-missing-index")  # fmt: skip
    with open_context(info, load_profile()) as ctx:
        apply_steps(ctx, [indexes.STEP])
    after_code, after = invoke(info, "--json", *RUNS, "--compare", str(path))
    yield Scenario(
        info,
        naming,
        json.loads(before),
        before_code,
        strict_code,
        json.loads(after),
        after_code,
        json.loads(path.read_text()),
    )
    pg_server.drop_database(name)


# -- the catalog ------------------------------------------------------------------------------


def test_the_catalog_has_a_query_for_each_runbook_index() -> None:
    profile = load_profile()
    assert [q.name for q in profile.queries] == SAMPLED + FIXED
    assert sorted(q.index for q in profile.queries) == sorted(RUNBOOK_INDEXES)
    assert {q.index for q in profile.queries} == {i.name for i in profile.indexes}
    # `pgrunbook profile export` writes the built-in text: it reads back to the same catalog
    assert parse_profile(builtin_text(), "copy").queries == profile.queries


def test_queries_render_in_this_databases_names(seeded_db: Any) -> None:
    info, naming, _ = seeded_db
    with open_context(info, load_profile()) as ctx:
        queries, skipped = render_catalog(ctx.catalog, ctx.profile.queries)
    assert skipped == []
    room_history = next(q for q in queries if q.name == "room_history")
    text = room_history.bind({"room_id": "r1"}).as_string()
    assert text == (
        f'SELECT * FROM "public"."{naming.table("Message")}" WHERE "{naming.column("roomId")}"'
        f" = 'r1' ORDER BY \"{naming.column('createdAt')}\" DESC LIMIT 50"
    )


@pytest.mark.parametrize(
    ("entry", "error"),
    [
        ('sql = "SELECT 1 WHERE x = :a"', "q: sql uses :a but params has no a = { ... }"),
        (
            'sql = "SELECT 1"\nparams.a = { value = 1 }',
            "q: parameter a is not used in sql (write :a)",
        ),
        (
            'sql = "SELECT :a"\nparams.a = { from = "Message" }',
            'q: parameter a: from must be "Table.column" (the column to sample)',
        ),
        (
            'sql = "SELECT :a"\nparams.a = { value = 1, from = "T.c" }',
            'q: parameter a needs value = ... or from = "Table.column" (one of them)',
        ),
        (
            'sql = "SELECT {a b}"',
            "q: sql has a bad placeholder {a b} (write {Table}, {column} or {Table.column})",
        ),
    ],
    ids=["undeclared", "unused", "bad-from", "value-and-from", "bad-placeholder"],
)
def test_a_broken_query_entry_is_one_line(entry: str, error: str) -> None:
    text = f'[[queries]]\nname = "q"\ntable = "T"\nindex = "i"\n{entry}\n'
    with pytest.raises(ConfigError) as caught:
        parse_profile(text, "p.toml")
    assert str(caught.value) == f"profile p.toml: {error}; fix the entry in the profile file"


# -- before and after apply (small scale) --------------------------------------------------


def test_before_apply_every_query_reports_its_missing_index(scenario: Scenario) -> None:
    results = by_key(scenario.before)
    assert list(results) == VARIANTS
    for (name, variant), q in results.items():
        assert q["index_state"] == "missing" and q["passed"] is False, (name, variant)
        assert q["verdict"] == "index missing"
        assert q["expected_index"] not in q["used_indexes"]
        assert q["median_ms"] > 0 and q["shared_hit"] + q["shared_read"] > 0
    hot = results[("room_history", "hot")]
    assert hot["rows"] == 50
    assert any(s.startswith("Sort by") for s in hot["sorts"])  # all its messages sorted
    # a missing index is what `apply` is for: exit 0, unless --fail-on-missing-index
    assert scenario.before_code == 0 and scenario.before["passed"] is True
    assert scenario.strict_code == 1


def test_after_apply_every_query_uses_its_expected_index(scenario: Scenario) -> None:
    results = by_key(scenario.after)
    failing = [(k, q["verdict"], q["path"]) for k, q in results.items() if not q["passed"]]
    assert [k for k, *_ in failing] == [("pending_reports", "fixed")], failing
    assert scenario.after_code == 0 and scenario.after["passed"] is True
    assert list(results) == VARIANTS
    for (name, variant), q in results.items():
        assert q["index_state"] == "present", name
        if name == "pending_reports":
            # 200 reports in 4 pages: read whole, rightly (the index test below grows it)
            assert q["verdict"] == "small table" and q["table_pages"] <= 10
            assert q["passed"] is False
            continue
        assert q["passed"] is True, (name, variant, q["path"])
        if variant != "typical":  # the hot and fixed ones read the expected index itself
            assert q["verdict"] == "uses it", (name, variant, q["path"])
            assert q["used_indexes"][0] == q["expected_index"]
        else:
            assert q["verdict"] in ("uses it", *(f"uses {a}" for a in q["accepted_indexes"]))
    # the index gives the hot values their order, no sort: except the most active follower,
    # who follows fewer users than the LIMIT (all are read anyway, and a bitmap scan and a
    # sort of them is cheaper), and the small table
    sorted_hot = [n for (n, v), q in results.items() if v != "typical" and q["sorts"]]
    assert sorted_hot == ["following", "pending_reports"]
    assert results[("following", "hot")]["rows"] < 50
    hot = results[("room_history", "hot")]
    message = scenario.naming.table("Message")
    assert hot["path"] == ["Limit", f"Index Scan using idx_message_room_created_desc on {message}"]


def test_the_hot_room_is_the_room_with_the_most_messages(scenario: Scenario) -> None:
    info, naming = scenario.info, scenario.naming
    per_room = sql.SQL("SELECT {r}::text, count(*) FROM {m} GROUP BY {r} ORDER BY 2 DESC, 1")
    found = rows(info, per_room.format(r=c(naming, "roomId"), m=t(naming, "Message")))
    counts = [(str(room), int(str(n))) for room, n in found]
    results = by_key(scenario.before)
    hot = results[("room_history", "hot")]
    assert hot["params"] == {"room_id": counts[0][0]}
    assert counts[0][1] > counts[1][1]  # one busiest room, not a tie
    assert hot["param_notes"]["room_id"] == (
        f"hot: the {naming.table('Message')}.{naming.column('roomId')} with the most rows "
        f"({counts[0][1]:,})"
    )
    typical = results[("room_history", "typical")]
    median_count = statistics.median_low(sorted(n for _, n in counts))
    typical_count = scalar(
        info,
        sql.SQL("SELECT count(*) FROM {m} WHERE {r} = %s").format(
            r=c(naming, "roomId"), m=t(naming, "Message")
        ),
        (typical["params"]["room_id"],),
    )
    assert typical_count == median_count < counts[0][1]
    assert typical["rows"] == min(50, median_count)


def test_compare_shows_the_speedup_per_query(scenario: Scenario) -> None:
    assert scenario.baseline["format"] == "pgrunbook explain baseline"
    assert by_key(scenario.baseline) == by_key(scenario.before)  # the file is the run
    comparison = by_key(scenario.after, "comparison")
    assert list(comparison) == VARIANTS
    before, after = by_key(scenario.before), by_key(scenario.after)
    for key, row in comparison.items():
        # the same query with the same values, before and after
        assert after[key]["params"] == before[key]["params"]
        assert after[key]["sql"] == before[key]["sql"]
        assert set(after[key]["param_notes"].values()) <= {
            "the baseline's value",
            "fixed in the profile",
        }
        assert row["before_ms"] == before[key]["median_ms"]
        assert row["after_ms"] == after[key]["median_ms"]
        assert row["speedup"] == pytest.approx(row["before_ms"] / row["after_ms"], abs=0.06)
        assert row["passed_before"] is False
    hot = comparison[("room_history", "hot")]
    assert hot["plan_changed"] is True and hot["passed_after"] is True
    assert hot["before_indexes"] != ["idx_message_room_created_desc"]
    assert hot["after_indexes"] == ["idx_message_room_created_desc"]
    assert hot["speedup"] > 5  # a sort of all the busiest room's messages, then 50 rows


def test_param_overrides_the_sample(scenario: Scenario) -> None:
    info, naming = scenario.info, scenario.naming
    room, count = rows(
        info,
        sql.SQL("SELECT {r}::text, count(*) FROM {m} GROUP BY {r} HAVING count(*) < 50 "
                "ORDER BY 2, 1 LIMIT 1").format(r=c(naming, "roomId"), m=t(naming, "Message")),
    )[0]  # fmt: skip
    code, out = invoke(info, "--json", "--runs", "1", "--query", "room_history",
                       "--param", f"room_id={room}")  # fmt: skip
    assert code == 0
    [q] = json.loads(out)["queries"]
    assert (q["name"], q["variant"]) == ("room_history", "fixed")
    assert q["params"] == {"room_id": room} and q["param_notes"] == {"room_id": "--param"}
    assert f"= '{room}'" in q["sql"]
    assert q["rows"] == int(str(count)) < 50


# -- smaller cases (tiny data) --------------------------------------------------------------


def test_pending_reports_use_their_index_once_the_queue_grows(db: ConnInfo) -> None:
    with open_context(db, load_profile()) as ctx:
        ctx.conn.execute(
            'INSERT INTO "Report" ("id", "reporterId", "reason", "status", "createdAt", '
            '"updatedAt") SELECT gen_random_uuid(), u."id", \'spam\', '
            "(ARRAY['PENDING', 'RESOLVED', 'DISMISSED', 'REVIEWED'])[1 + g % 4]::\"ReportStatus\","
            " now() - make_interval(mins => g), now() "
            'FROM generate_series(1, 20000) AS g, LATERAL (SELECT "id" FROM "User" LIMIT 1) u'
        )
        ctx.conn.execute('ANALYZE "Report"')
        apply_steps(ctx, [indexes.STEP])
    code, out = invoke(db, "--json", "--runs", "1", "--query", "pending_reports")
    [q] = json.loads(out)["queries"]
    assert code == 0 and q["verdict"] == "uses it"
    assert q["path"] == ["Limit", "Index Scan using idx_report_pending on Report"]


def test_plan_tree_and_the_exit_code_when_an_index_is_not_used(db: ConnInfo) -> None:
    with open_context(db, load_profile()) as ctx:
        apply_steps(ctx, [indexes.STEP])
        # the room-history index exists, but the planner can never use it: the query
        # compares roomId as text
        ctx.conn.execute("ALTER INDEX idx_message_room_created_desc RENAME TO idx_elsewhere")
        ctx.conn.execute(
            'CREATE INDEX idx_message_room_created_desc ON "Message" (("roomId"::text)) WHERE false'
        )
    code, out = invoke(db, "--runs", "1", "--plan", "--query", "room_history",
                       "--query", "public_rooms")  # fmt: skip
    assert code == 1
    assert "not used" in out
    assert "-> Index Scan using idx_elsewhere on Message" in out  # --plan: the tree
    assert "0 of 3 use their expected index" in out
    assert "do not use it although it exists" in out


def test_an_invalid_index_fails_even_without_the_flag(db: ConnInfo) -> None:
    # a concurrent build that failed (duplicate keys) leaves an INVALID index behind
    with open_context(db, load_profile()) as ctx, pytest.raises(psycopg.errors.UniqueViolation):
        ctx.conn.execute(
            'CREATE UNIQUE INDEX CONCURRENTLY idx_message_room_created_desc ON "Message" ("roomId")'
        )
    code, out = invoke(db, "--json", "--runs", "1", "--query", "room_history")
    results = by_key(json.loads(out))
    assert code == 1
    assert [(q["index_state"], q["verdict"]) for q in results.values()] == [
        ("invalid", "index invalid"),
        ("invalid", "index invalid"),
    ]


def test_a_data_changing_query_is_rolled_back(db: ConnInfo, tmp_path: Path) -> None:
    profile = tmp_path / "p.toml"
    profile.write_text(
        '[[queries]]\nname = "mark_read"\ntable = "Notification"\n'
        'index = "idx_notification_user_unread"\n'
        'sql = "UPDATE {Notification} SET {isRead} = true WHERE {userId} = :user_id'
        ' AND NOT {isRead}"\n'
        'params.user_id = { from = "Notification.userId", where = "{isRead} = false" }\n'
    )
    unread = 'SELECT count(*) FROM "Notification" WHERE NOT "isRead"'
    before = scalar(db, unread)
    code, out = invoke(db, "--json", "--runs", "3", "--profile", str(profile))
    assert code == 0
    results = by_key(json.loads(out))
    assert list(results) == [("mark_read", "hot"), ("mark_read", "typical")]
    hot = results[("mark_read", "hot")]
    assert hot["node_type"] == "ModifyTable"
    user = hot["params"]["user_id"]
    hot_unread = scalar(db, unread + ' AND "userId" = %s', (user,))
    assert hot["param_notes"]["user_id"].endswith(f"({hot_unread:,})")
    # every run updated them all: each saw the data as it was (its own savepoint)
    [scan] = hot["plan"]["Plans"]
    assert scan["Actual Rows"] == hot_unread
    assert scalar(db, unread) == before  # every run was rolled back


def test_queries_that_cannot_run_here_are_skipped_with_the_reason(
    db: ConnInfo, tmp_path: Path
) -> None:
    profile = tmp_path / "p.toml"
    profile.write_text(
        '[[queries]]\nname = "ghost"\ntable = "Ghost"\nindex = "i"\nsql = "SELECT 1"\n'
        '[[queries]]\nname = "no_column"\ntable = "Room"\nindex = "i"\n'
        'sql = "SELECT {colour} FROM {Room}"\n'
        '[[queries]]\nname = "members"\ntable = "RoomMember"\nindex = "i"\n'
        'sql = "SELECT * FROM {RoomMember} WHERE {roomId} = :room_id"\n'
        'params.room_id = { from = "RoomMember.roomId", where = "{isActive}" }\n'
    )
    no_active_members = 'UPDATE "RoomMember" SET "isActive" = false'
    with open_context(db, load_profile()) as ctx:
        ctx.conn.execute(no_active_members)
    code, out = invoke(db, "--json", "--profile", str(profile))
    document = json.loads(out)
    assert code == 0 and document["queries"] == []
    assert document["skipped"] == [
        {"object": "ghost", "reason": "table 'Ghost' not found in public"},
        {
            "object": "no_column",
            "reason": "{colour} is neither a column of public.Room nor a table",
        },
        {
            "object": "members",
            "reason": "no rows in public.RoomMember where {isActive} to sample "
            "RoomMember.roomId from",
        },
    ]


@pytest.fixture
def registered() -> Iterator[None]:
    """``explain`` in the group, so ``run`` turns errors into one line and exit code 2."""
    added = "explain" not in cli.commands
    if added:
        cli.add_command(explain)
    yield
    if added:
        del cli.commands["explain"]


@pytest.mark.parametrize(
    ("args", "files", "message"),
    [
        (
            ["--query", "room_histori"],
            {},
            "unknown query 'room_histori'; the profile's queries are room_history, ",
        ),
        (
            ["--query", "public_rooms", "--param", "room_id=x"],
            {},
            "no selected query has the parameter 'room_id'; the parameters are (none)",
        ),
        (["--param", "room_id"], {}, "--param 'room_id' is not name=value; e.g. --param"),
        (
            ["--profile", "{tmp}/old.toml"],
            {"old.toml": 'name = "old"\n'},
            "the profile {tmp}/old.toml has no [[queries]] to explain; copy the section",
        ),
        (["--compare", "{tmp}/nope.json"], {}, "baseline {tmp}/nope.json does not exist; "),
        (
            ["--compare", "{tmp}/b.json"],
            {"b.json": "{not json"},
            "baseline {tmp}/b.json is not JSON (Expecting property name enclosed",
        ),
        (
            ["--compare", "{tmp}/b.json"],
            {"b.json": '{"queries": []}'},
            "{tmp}/b.json is not a pgrunbook explain baseline; pass a file written by",
        ),
        (
            ["--compare", "{tmp}/b.json"],
            {"b.json": '{"format": "pgrunbook explain baseline", "queries": [{"name": 1}]}'},
            "baseline {tmp}/b.json is damaged (ValueError: not a query result)",
        ),
        (
            ["--query", "room_history", "--param", "room_id=not-a-uuid"],
            {},
            "query room_history (fixed) failed: invalid input syntax for type uuid: "
            '"not-a-uuid"; check the --param values',
        ),
    ],
    ids=[
        "unknown-query",
        "unknown-param",
        "malformed-param",
        "profile-without-queries",
        "missing-baseline",
        "not-json",
        "not-a-baseline",
        "damaged-baseline",
        "wrong-param-value",
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(
    args: list[str],
    files: dict[str, str],
    message: str,
    db: ConnInfo,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    registered: None,
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    argv = ["explain", "--dsn", url(db), *(a.replace("{tmp}", str(tmp_path)) for a in args)]
    code = run(argv)
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.count("\n") == 1
    assert err.startswith("error: " + message.replace("{tmp}", str(tmp_path))), err
