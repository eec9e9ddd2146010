"""``pgrunbook seed``: exact defect counts, determinism, refusal of non-empty targets."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from psycopg import sql

from pgrunbook.cli.main import run
from pgrunbook.dsn import ConnInfo
from pgrunbook.errors import TargetNotEmptyError
from pgrunbook.reference import ALI_SCHEMA, Naming
from pgrunbook.seed import seed, verify_counts
from tests.support import TEST_ANCHOR, Template, execute, rows, scalar

# At tiny scale every defect is injected in these exact numbers (the anomaly unit is 1).
TINY_DEFECTS = {
    "orphan_messages": 7,
    "orphan_gift_sends": 5,
    "orphan_notifications": 6,
    "negative_wallet_balances": 4,
    "negative_wallet_diamonds": 3,
    "zero_amount_wallet_transactions": 5,
    "self_follows": 3,
    "self_gifts": 4,
    "invalid_emails": 5,
    "invalid_usernames": 4,
    "rooms_over_capacity": 2,
}


@pytest.mark.parametrize("naming", list(Naming))
def test_defect_counts_are_exact(
    naming: Naming, templates: dict[Naming, Template], make_db: Callable[..., ConnInfo]
) -> None:
    report = templates[naming].report
    info = make_db(templates[naming].name)
    counted = verify_counts(info, naming)
    for kind, expected in TINY_DEFECTS.items():
        assert report.anomalies[kind] == expected, kind
        assert counted[kind] == expected, kind
    for kind in (
        "refresh_tokens_expired_over_7_days",
        "refresh_tokens_revoked",
        "read_notifications_over_30_days",
        "pending_reports",
    ):
        assert counted[kind] == report.anomalies[kind] > 0, kind


@pytest.mark.parametrize("naming", list(Naming))
def test_duplicate_and_unused_indexes(
    naming: Naming, templates: dict[Naming, Template], make_db: Callable[..., ConnInfo]
) -> None:
    info = make_db(templates[naming].name)
    manifest = templates[naming].report.anomalies
    (duplicate,) = manifest["duplicate_indexes"]
    (unused,) = manifest["unused_indexes"]
    original = Naming(naming).table("Message") + "_" + naming.column("roomId") + "_idx"
    defs = {str(n): str(d) for n, d in rows(info, "SELECT indexname, indexdef FROM pg_indexes")}
    assert str(defs[duplicate]).replace(duplicate, "X") == str(defs[original]).replace(
        original, "X"
    )
    assert naming.column("updatedAt") in str(defs[unused])


def test_relations_without_index_are_listed(templates: dict[Naming, Template]) -> None:
    listed = templates[Naming.PRISMA].report.anomalies["foreign_keys_without_index"]
    assert "Message.senderId" in listed
    assert "GiftSend.roomId (logical, no foreign key)" in listed
    assert "RoomMember.roomId" not in listed  # led by the unique (roomId, userId) index


def test_dead_tuples_from_churn(empty_db: ConnInfo) -> None:
    report = seed(empty_db, scale="tiny", seed=7, anchor=TEST_ANCHOR)
    churned = report.anomalies["dead_tuples"]["rows_updated"]
    assert churned == report.rows["Wallet"] * 15 // 100
    dead, live = rows(
        empty_db,
        "SELECT n_dead_tup, n_live_tup FROM pg_stat_user_tables WHERE relname = 'Wallet'",
    )[0]
    assert int(str(dead)) >= 0.10 * int(str(live))
    never = scalar(
        empty_db,
        "SELECT count(*) FROM pg_stat_user_tables WHERE last_analyze IS NULL "
        "AND last_autoanalyze IS NULL",
    )
    assert never == 0


def _checksums(info: ConnInfo) -> dict[str, str]:
    out = {}
    for table in ALI_SCHEMA.tables:
        query = sql.SQL("SELECT md5(string_agg(t::text, '|' ORDER BY t.id)) FROM {} t").format(
            sql.Identifier(table.name)
        )
        out[table.name] = str(scalar(info, query))
    return out


def test_same_seed_same_data(make_db: Callable[..., ConnInfo]) -> None:
    anchor = datetime(2026, 1, 4, 12, 0, tzinfo=UTC)
    first, second, other = make_db(), make_db(), make_db()
    seed(first, scale="tiny", seed=123, anchor=anchor)
    seed(second, scale="tiny", seed=123, anchor=anchor)
    seed(other, scale="tiny", seed=124, anchor=anchor)
    assert _checksums(first) == _checksums(second)
    differing = [t for t, v in _checksums(other).items() if v != _checksums(first)[t]]
    assert len(differing) == len(ALI_SCHEMA.tables)


def test_refuses_a_database_with_tables(db: ConnInfo) -> None:
    before = scalar(db, 'SELECT count(*) FROM "Message"')
    with pytest.raises(TargetNotEmptyError, match="already holds 12 table"):
        seed(db, scale="tiny")
    assert scalar(db, 'SELECT count(*) FROM "Message"') == before


def test_an_extensions_views_do_not_make_a_schema_non_empty(empty_db: ConnInfo) -> None:
    execute(empty_db, "CREATE EXTENSION pg_stat_statements; CREATE VIEW mine AS SELECT 1 AS x")
    with pytest.raises(TargetNotEmptyError, match=r"already holds 1 table\(s\) \(mine\)"):
        seed(empty_db, scale="tiny")
    execute(empty_db, "DROP VIEW mine")
    assert seed(empty_db, scale="tiny").rows["Message"] == 10_000


def test_force_reseeds_only_reference_tables(db: ConnInfo) -> None:
    execute(db, "CREATE TABLE keep_me (id int); INSERT INTO keep_me VALUES (1)")
    report = seed(db, scale="tiny", seed=5, force=True)
    assert scalar(db, "SELECT count(*) FROM keep_me") == 1
    assert scalar(db, 'SELECT count(*) FROM "Message"') == report.rows["Message"]


def test_a_failed_seed_leaves_nothing(empty_db: ConnInfo) -> None:
    # A type named like a table makes CREATE TABLE "Message" fail half way through.
    execute(empty_db, 'CREATE TYPE "Message" AS (x int)')
    with pytest.raises(Exception, match="already exists"):
        seed(empty_db, scale="tiny")
    tables = scalar(empty_db, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
    types = scalar(empty_db, "SELECT count(*) FROM pg_type WHERE typname = 'UserStatus'")
    assert (tables, types) == (0, 0)


def test_cli_seed_json(empty_db: ConnInfo, capsys: pytest.CaptureFixture[str]) -> None:
    code = run(["seed", "--dsn", empty_db.display(), "--scale", "tiny", "--naming", "snake",
                "--json"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    document = json.loads(out)
    assert document["naming"] == "snake"
    assert document["anomalies"]["self_follows"] == 3
    assert document["rows"]["Message"] == 10_000
    assert scalar(empty_db, "SELECT count(*) FROM messages") == 10_000


def test_cli_seed_dry_run_changes_nothing(
    empty_db: ConnInfo, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run(["seed", "--dsn", empty_db.display(), "--dry-run"])
    out = capsys.readouterr().out
    assert code == 0
    assert 'CREATE TABLE "Message"' in out and "COPY about 200000 rows" in out
    assert scalar(empty_db, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == 0


def test_cli_seed_non_empty_is_one_line_exit_2(
    db: ConnInfo, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run(["seed", "--dsn", db.display(), "--scale", "tiny"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1
    assert err[-1].startswith("error: schema 'public' of database") and "--force" in err[-1]


def test_cli_seed_force_needs_yes_when_not_interactive(
    db: ConnInfo, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run(["seed", "--dsn", db.display(), "--scale", "tiny", "--force"])
    err = capsys.readouterr().err
    assert code == 2
    assert "pass --yes" in err
    assert scalar(db, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == 12
