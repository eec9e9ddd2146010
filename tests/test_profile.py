"""Profiles: the built-in Ali profile, and one clear line for a broken one."""

from __future__ import annotations

from dataclasses import MISSING, fields, replace
from pathlib import Path
from typing import Any

import pytest

from pgrunbook.catalog import Column, Table
from pgrunbook.errors import ConfigError
from pgrunbook.profile import load_profile
from pgrunbook.profile.load import builtin_text, parse_profile
from pgrunbook.reference import rules

RUNBOOK_CONSTRAINTS = {
    "chk_wallet_balance_non_negative": "Wallet",
    "chk_wallet_diamonds_non_negative": "Wallet",
    "chk_wallet_tx_amount_nonzero": "WalletTransaction",
    "chk_gift_price_positive": "Gift",
    "chk_giftsend_quantity_positive": "GiftSend",
    "chk_giftsend_totalprice_positive": "GiftSend",
    "chk_giftsend_not_self": "GiftSend",
    "chk_room_maxmembers_positive": "Room",
    "chk_room_currentmembers_valid": "Room",
    "chk_follow_not_self": "Follow",
    "chk_user_email_format": "User",
    "chk_user_username_format": "User",
}


def _table(name: str, *columns: tuple[str, str]) -> Table:
    """A catalog table with these columns (the statistics fields left empty)."""
    empty: dict[str, Any] = {
        f.name: None for f in fields(Table) if f.default is f.default_factory is MISSING
    }
    table = Table(**{**empty, "oid": 1, "schema": "public", "name": name, "kind": "r"})
    for num, (col, type_) in enumerate(columns, 1):
        table.columns.append(Column(1, num, col, 0, type_, True))
    return table


def test_builtin_profile_parses() -> None:
    profile = load_profile()
    assert profile.name == "ali"
    assert profile.source == "built-in"
    assert {c.name: c.table for c in profile.constraints} == RUNBOOK_CONSTRAINTS
    assert [
        (r.name, r.table, r.column, r.older_than_days, r.cadence) for r in profile.retention
    ] == [
        ("expired_refresh_tokens", "RefreshToken", "expiresAt", 7, "daily"),
        ("read_notifications", "Notification", "createdAt", 30, "weekly"),
    ]
    assert profile.retention[0].older_than_days == rules.REFRESH_TOKEN_RETENTION_DAYS
    assert profile.retention[1].older_than_days == rules.READ_NOTIFICATION_RETENTION_DAYS


def test_builtin_patterns_are_the_reference_rules() -> None:
    profile = load_profile()
    assert profile.constraint("chk_user_email_format").check.values == {
        "pattern": rules.EMAIL_PATTERN
    }
    assert profile.constraint("chk_user_username_format").check.values == {
        "pattern": rules.USERNAME_PATTERN
    }


def test_predicates_render_in_either_naming() -> None:
    profile = load_profile()
    room = profile.constraint("chk_room_currentmembers_valid").check
    prisma = room.render(_table("Room", ("currentMembers", "integer"), ("maxMembers", "integer")))
    snake = room.render(_table("rooms", ("current_members", "integer"), ("max_members", "integer")))
    assert not isinstance(prisma, str) and not isinstance(snake, str)
    assert prisma.as_string() == ('"currentMembers" >= 0 AND "currentMembers" <= "maxMembers"')
    assert snake.as_string() == '"current_members" >= 0 AND "current_members" <= "max_members"'
    assert room.render(_table("rooms", ("current_members", "integer"))) == (
        "column 'maxMembers' not found in public.rooms"
    )
    notes = profile.retention[1]
    rendered = notes.render(
        _table(
            "notifications",
            ("is_read", "boolean"),
            ("created_at", "timestamp(3) without time zone"),
        )
    )
    assert not isinstance(rendered, str)
    assert rendered.as_string() == (
        '("is_read") AND "created_at" < (now() AT TIME ZONE \'UTC\') - make_interval(days => 30)'
    )


def test_a_copy_of_the_builtin_text_is_the_same_profile() -> None:
    assert parse_profile(builtin_text(), "copy") == replace(load_profile(), source="copy")


GOOD_RETENTION = '[[retention]]\nname = "r"\ntable = "T"\ncolumn = "c"\nolder_than_days = 1\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name = = 1\n", "profile p.toml: not valid TOML (Invalid value (at line 1, column 8))"),
        (
            '[[constraints]]\nname = "chk_a"\ncheck = "{a} > 0"\n',
            'profile p.toml: chk_a needs table = "..."',
        ),
        (
            '[[constraints]]\ntable = "T"\ncheck = "{a} > 0"\n',
            'profile p.toml: [[constraints]] #1 needs name = "..."',
        ),
        (
            '[[retention]]\nname = "r"\ntable = "T"\ncolumn = "c"\n',
            "profile p.toml: r needs older_than_days = <whole number of days>",
        ),
        (
            '[[constraints]]\nname = "chk_a"\ntable = "T"\ncheck = "{a b} > 0"\n',
            "profile p.toml: chk_a: check has a bad placeholder {a b} (write {column} or "
            "{value_name})",
        ),
        (
            '[[constraints]]\nname = "chk_a"\ntable = "T"\ncheck = "{} > 0"\n',
            "profile p.toml: chk_a: check has a bad placeholder {} (write {column} or "
            "{value_name})",
        ),
        (
            '[[constraints]]\nname = "chk_a"\ntable = "T"\ncheck = "{a!r} > 0"\n',
            "profile p.toml: chk_a: check has a bad placeholder {a!r} (write {column} or "
            "{value_name})",
        ),
        (
            '[[constraints]]\nname = "chk_a"\ntable = "T"\ncheck = "{a > 0"\n',
            "profile p.toml: chk_a: check is not a valid template (expected '}' before end "
            "of string)",
        ),
        (
            '[[constraints]]\nname = "r"\ntable = "T"\ncheck = "{a} > 0"\n' + GOOD_RETENTION,
            "profile p.toml: the name 'r' is used twice",
        ),
        (
            GOOD_RETENTION + 'cadence = "hourly"\n',
            "profile p.toml: r: cadence must be one of daily, weekly, monthly, quarterly",
        ),
        (
            GOOD_RETENTION + 'wher = "{isRead}"\n',
            "profile p.toml: r: unknown key 'wher' (known keys: cadence, column, name, "
            "older_than_days, table, values, where)",
        ),
        (
            '[constraints]\nname = "chk_a"\n',
            "profile p.toml: constraints must be written as [[constraints]] entries",
        ),
    ],
    ids=[
        "bad-toml",
        "missing-table",
        "missing-name",
        "missing-age",
        "bad-placeholder",
        "empty-placeholder",
        "conversion",
        "unbalanced",
        "duplicate-name",
        "bad-cadence",
        "misspelt-key",
        "not-an-array",
    ],
)
def test_broken_profile_is_one_clear_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "p.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        parse_profile(text, "p.toml")
    error = str(caught.value)
    assert "\n" not in error
    assert error == f"{message}; fix the entry in the profile file"
    with pytest.raises(ConfigError) as from_file:
        load_profile(path)
    assert str(from_file.value) == error.replace("p.toml", str(path), 1)


def test_missing_profile_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^profile .*nope\.toml does not exist; check the"):
        load_profile(tmp_path / "nope.toml")
