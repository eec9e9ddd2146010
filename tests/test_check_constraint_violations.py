"""constraint_violations: rows breaking NOT VALID CHECK constraints or planned ones."""

from __future__ import annotations

import psycopg
import pytest

from pgrunbook.discover.run import discover
from pgrunbook.dsn import ConnInfo
from pgrunbook.findings import Finding, Severity
from pgrunbook.reference import Naming
from tests.support import Template, execute, scalar

NAMINGS = [("db", Naming.PRISMA), ("snake_db", Naming.SNAKE)]

# Planned constraint -> (logical table, seed anomaly that breaks it).
SEEDED = {
    "chk_wallet_balance_non_negative": ("Wallet", "negative_wallet_balances", 4),
    "chk_wallet_diamonds_non_negative": ("Wallet", "negative_wallet_diamonds", 3),
    "chk_wallet_tx_amount_nonzero": ("WalletTransaction", "zero_amount_wallet_transactions", 5),
    "chk_giftsend_not_self": ("GiftSend", "self_gifts", 4),
    "chk_room_currentmembers_valid": ("Room", "rooms_over_capacity", 2),
    "chk_follow_not_self": ("Follow", "self_follows", 3),
    "chk_user_email_format": ("User", "invalid_emails", 5),
    "chk_user_username_format": ("User", "invalid_usernames", 4),
}
CLEAN = {
    "chk_gift_price_positive",
    "chk_giftsend_quantity_positive",
    "chk_giftsend_totalprice_positive",
    "chk_room_maxmembers_positive",
}


def _listed(info: ConnInfo, query: str) -> set[str]:
    """The first column (the id) of what ``query`` lists; run as a user would, no parameters."""
    with psycopg.connect(info.conninfo(), autocommit=True) as conn:
        return {str(r[0]) for r in conn.execute(query.encode()).fetchall()}


def _violations(info: ConnInfo) -> tuple[list[Finding], list[dict[str, object]]]:
    report = discover(info, only=("constraint_violations",))
    assert [c.status for c in report.checks] == ["ran"]
    facts: list[dict[str, object]] = report.facts.get("constraint_violations", [])
    return report.by_check("constraint_violations"), facts


@pytest.mark.parametrize(("fixture", "naming"), NAMINGS)
def test_seeded_violations_of_planned_constraints_exactly(
    request: pytest.FixtureRequest, fixture: str, naming: Naming, templates: dict[Naming, Template]
) -> None:
    info: ConnInfo = request.getfixturevalue(fixture)
    manifest = templates[naming].report.anomalies
    findings, facts = _violations(info)

    got = {f.details["constraint"]: f for f in findings}
    assert set(got) == set(SEEDED)
    for name, (table, anomaly, count) in SEEDED.items():
        finding = got[name]
        assert manifest[anomaly] == count
        assert finding.severity is Severity.WARNING
        assert finding.object == f"public.{naming.table(table)}"
        assert finding.details["table"] == finding.object
        assert finding.details["state"] == "planned"
        assert finding.details["count"] == count, name
        assert finding.details["sampled"] is False
        assert "even NOT VALID, any UPDATE of one of these rows fails" in finding.message
        listed = _listed(info, finding.details["query"])
        assert len(listed) == count
        assert len(finding.details["samples"]) == min(count, 5)
        assert set(finding.details["samples"]) <= listed
        assert finding.fix is None  # the data fix is the user's
    assert {f["constraint"] for f in facts if f["count"] == 0} == CLEAN
    assert len(facts) == 12


def test_planned_check_text_is_runnable_sql(db: ConnInfo) -> None:
    # The email pattern holds a % and a backslash: the rendered check must survive both.
    finding = next(
        f for f in _violations(db)[0] if f.details["constraint"] == "chk_user_email_format"
    )
    check = finding.details["check"]
    assert check.startswith('"email" ~ ') and "%+-" in check
    assert len(_listed(db, f'SELECT id FROM "User" WHERE NOT ({check})')) == 5


def test_not_valid_check_constraint(db: ConnInfo) -> None:
    execute(
        db,
        'ALTER TABLE "Wallet" ADD CONSTRAINT chk_wallet_balance_non_negative '
        "CHECK (balance >= 0) NOT VALID",
    )
    findings, _ = _violations(db)
    mine = [f for f in findings if f.details["constraint"] == "chk_wallet_balance_non_negative"]
    assert len(mine) == 1  # counted once, as NOT VALID, no longer as planned
    finding = mine[0]
    assert finding.severity is Severity.WARNING
    assert finding.object == "public.Wallet"
    assert finding.details["state"] == "not_valid"
    assert finding.details["count"] == 4
    assert finding.details["check"] == "(balance >= 0)"
    assert "NOT VALID" in finding.message
    assert finding.fix == (
        'ALTER TABLE "public"."Wallet" VALIDATE CONSTRAINT "chk_wallet_balance_non_negative";'
    )
    # The runbook's section 7: fix the data, then the fix validates.
    execute(db, 'UPDATE "Wallet" SET balance = 0 WHERE balance < 0')
    execute(db, finding.fix)
    assert (
        scalar(
            db,
            "SELECT convalidated FROM pg_constraint WHERE conname = %s",
            (finding.details["constraint"],),
        )
        is True
    )
    left = [f.details["constraint"] for f in _violations(db)[0]]
    assert "chk_wallet_balance_non_negative" not in left
    assert len(left) == len(SEEDED) - 1


def test_not_valid_check_lets_null_pass(empty_db: ConnInfo) -> None:
    execute(
        empty_db,
        "CREATE TABLE item (id int PRIMARY KEY, qty int);"
        "INSERT INTO item VALUES (1, -1), (2, NULL), (3, 5), (4, 0);"
        "ALTER TABLE item ADD CONSTRAINT item_qty_positive CHECK (qty > 0) NOT VALID;",
    )
    findings, facts = _violations(empty_db)
    assert [(f.object, f.details["count"], f.details["samples"]) for f in findings] == [
        ("public.item", 2, ["1", "4"])
    ]
    assert facts == [
        {
            "constraint": "item_qty_positive",
            "table": "public.item",
            "state": "not_valid",
            "count": 2,
            "sampled": False,
        }
    ]


def test_unrelated_database_gives_nothing(empty_db: ConnInfo) -> None:
    execute(empty_db, "CREATE TABLE invoice (id int PRIMARY KEY, total int)")
    assert _violations(empty_db) == ([], [])


def test_missing_tables_and_columns_are_skipped_with_a_reason(empty_db: ConnInfo) -> None:
    execute(
        empty_db,
        "CREATE TABLE users (id int PRIMARY KEY, email text);"
        "INSERT INTO users VALUES (1, 'a@example.com'), (2, 'nope'), (3, NULL);",
    )
    findings, _ = _violations(empty_db)
    warnings = [f for f in findings if f.severity is not Severity.INFO]
    assert [(f.details["constraint"], f.details["count"]) for f in warnings] == [
        ("chk_user_email_format", 1)
    ]
    skipped = {f.details["constraint"]: f for f in findings if f.severity is Severity.INFO}
    assert set(skipped) == {
        "chk_wallet_balance_non_negative",
        "chk_wallet_diamonds_non_negative",
        "chk_wallet_tx_amount_nonzero",
        "chk_gift_price_positive",
        "chk_giftsend_quantity_positive",
        "chk_giftsend_totalprice_positive",
        "chk_giftsend_not_self",
        "chk_room_maxmembers_positive",
        "chk_room_currentmembers_valid",
        "chk_follow_not_self",
        "chk_user_username_format",
    }
    username = skipped["chk_user_username_format"]
    assert username.object == "public.users"
    assert username.message == (
        "skipped chk_user_username_format: column 'username' not found in public.users"
    )
    assert skipped["chk_follow_not_self"].message == (
        "skipped chk_follow_not_self: table 'Follow' not found in public"
    )


@pytest.mark.parametrize(("fixture", "naming"), NAMINGS)
def test_clean_data_gives_nothing(
    request: pytest.FixtureRequest, fixture: str, naming: Naming
) -> None:
    info: ConnInfo = request.getfixturevalue(fixture)

    def t(name: str) -> str:
        return f'"{naming.table(name)}"'

    def c(name: str) -> str:
        return f'"{naming.column(name)}"'

    execute(
        info,
        f"UPDATE {t('Wallet')} SET {c('balance')} = 0 WHERE {c('balance')} < 0;"
        f"UPDATE {t('Wallet')} SET {c('diamonds')} = 0 WHERE {c('diamonds')} < 0;"
        f"DELETE FROM {t('WalletTransaction')} WHERE {c('amount')} = 0;"
        f"DELETE FROM {t('GiftSend')} WHERE {c('senderId')} = {c('receiverId')};"
        f"UPDATE {t('Room')} SET {c('currentMembers')} = {c('maxMembers')} "
        f"WHERE {c('currentMembers')} > {c('maxMembers')};"
        f"DELETE FROM {t('Follow')} WHERE {c('followerId')} = {c('followingId')};"
        f"UPDATE {t('User')} SET email = 'u' || md5(id::text) || '@example.com' "
        "WHERE email !~ '^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\\.[A-Za-z]{2,}$';"
        f"UPDATE {t('User')} SET username = 'u_' || left(md5(id::text), 20) "
        "WHERE username !~ '^[A-Za-z0-9_]{3,30}$';",
    )
    findings, facts = _violations(info)
    assert findings == []
    assert len(facts) == 12 and all(f["count"] == 0 for f in facts)
