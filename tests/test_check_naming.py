"""naming: camelCase, snake_case or mixed, for tables and columns, with the evidence."""

from __future__ import annotations

from typing import Any

import pytest

from pgrunbook.config import Config
from pgrunbook.discover.checks.naming import camel, classify, judge
from pgrunbook.discover.run import discover
from pgrunbook.dsn import ConnInfo
from pgrunbook.findings import Finding, Severity
from pgrunbook.reference.model import ALI_SCHEMA
from tests.support import execute

# The reference schema's distinct column names: those with a capital are two-word names
# (camelCase in Prisma naming, snake_case in the other), the rest single words.
_COLUMNS = {c.name for t in ALI_SCHEMA.tables for c in t.columns}
TWO_WORD = sum(1 for n in _COLUMNS if n != n.lower())
ONE_WORD = len(_COLUMNS) - TWO_WORD


def _naming(info: ConnInfo, **overrides: Any) -> Finding:
    config = Config(checks={"naming": overrides}) if overrides else None
    report = discover(info, only=("naming",), config=config)
    [finding] = report.by_check("naming")
    assert finding.severity is Severity.INFO
    assert finding.object == "schema public"
    assert report.facts["naming"] == finding.details
    return finding


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("RoomMember", "camel"),
        ("roomId", "camel"),
        ("User", "camel"),
        ("_RoomToUser", "camel"),
        ("room_id", "snake"),
        ("address_2", "snake"),
        ("email", "neutral"),
        ("users", "neutral"),
        ("ID", "neutral"),
        ("A", "neutral"),
        ("Room_Member", "other"),
        ("ROOM_ID", "other"),
        ("room id", "other"),
    ],
)
def test_classify(name: str, kind: str) -> None:
    assert classify(name) == kind


def test_camel_and_judge() -> None:
    assert camel("updated_at") == "updatedAt"
    assert camel("updatedAt") == "updatedAt"
    assert camel("audit_log", pascal=True) == "AuditLog"
    assert judge(["id", "email"]).style == "unknown"
    assert judge([f"col{i}Name" for i in range(10)] + ["one_off"]).style == "camel"
    assert judge([f"col{i}Name" for i in range(10)] + ["one_off"], 0.0).style == "mixed"
    assert judge(["a_b", "c_d", "eF"]).style == "mixed"


def test_prisma_seed_is_camel(db: ConnInfo) -> None:
    # Prisma's own bookkeeping table is snake_case and must not sway the verdict.
    execute(
        db,
        "CREATE TABLE _prisma_migrations (id varchar(36) PRIMARY KEY, checksum text, "
        "finished_at timestamptz, migration_name text, applied_steps_count int)",
    )
    finding = _naming(db)
    tables, columns = finding.details["tables"], finding.details["columns"]
    assert tables["style"] == "camel"
    assert tables["counts"] == {"camel": 12, "snake": 0, "neutral": 0, "other": 0}
    assert tables["examples"]["camel"] == ["Follow", "Gift", "GiftSend", "Message", "Notification"]
    assert columns["style"] == "camel"
    assert columns["counts"] == {"camel": TWO_WORD, "snake": 0, "neutral": ONE_WORD, "other": 0}
    assert TWO_WORD > 10
    assert finding.details["ignored_tables"] == ["_prisma_migrations"]
    assert finding.details["preferred"] == "camel"
    assert finding.message.startswith("tables camelCase (12 camel, 0 snake, 0 other of 12); ")
    assert finding.message.endswith("new columns are spelled like updatedAt")


def test_snake_seed_is_snake(snake_db: ConnInfo) -> None:
    finding = _naming(snake_db)
    tables, columns = finding.details["tables"], finding.details["columns"]
    assert tables["style"] == "snake"
    assert tables["counts"] == {"camel": 0, "snake": 4, "neutral": 8, "other": 0}
    assert tables["examples"]["snake"] == [
        "gift_sends",
        "refresh_tokens",
        "room_members",
        "wallet_transactions",
    ]
    assert columns["style"] == "snake"
    assert columns["counts"] == {"camel": 0, "snake": TWO_WORD, "neutral": ONE_WORD, "other": 0}
    assert columns["examples"]["snake"][:2] == ["avatar_url", "created_at"]
    assert finding.details["preferred"] == "snake"
    assert finding.message.endswith("new columns are spelled like updated_at")


def test_mixed_schema_with_evidence(empty_db: ConnInfo) -> None:
    execute(
        empty_db,
        'CREATE TABLE "UserProfile" (id int PRIMARY KEY, "userId" int, "displayName" text);'
        "CREATE TABLE order_items (id int PRIMARY KEY, order_id int, unit_price int);",
    )
    finding = _naming(empty_db)
    assert finding.details["tables"] == {
        "style": "mixed",
        "counts": {"camel": 1, "snake": 1, "neutral": 0, "other": 0},
        "examples": {"camel": ["UserProfile"], "snake": ["order_items"]},
    }
    assert finding.details["columns"] == {
        "style": "mixed",
        "counts": {"camel": 2, "snake": 2, "neutral": 1, "other": 0},
        "examples": {
            "camel": ["displayName", "userId"],
            "snake": ["order_id", "unit_price"],
            "neutral": ["id"],
        },
    }
    assert finding.message.startswith(
        "tables mixed (1 camel, 1 snake, 0 other of 2); columns mixed"
    )


def test_a_stray_name_does_not_make_it_mixed_unless_configured(empty_db: ConnInfo) -> None:
    columns = ", ".join(f'"field{i}Name" int' for i in range(12))
    execute(empty_db, f'CREATE TABLE "Thing" (id int PRIMARY KEY, {columns}, legacy_flag bool)')
    assert _naming(empty_db).details["columns"]["style"] == "camel"
    assert _naming(empty_db, max_minority_share=0.0).details["columns"]["style"] == "mixed"


def test_empty_schema_is_unknown(empty_db: ConnInfo) -> None:
    finding = _naming(empty_db)
    assert finding.details["tables"]["style"] == "unknown"
    assert finding.details["columns"]["style"] == "unknown"
    assert finding.details["preferred"] == "camel"  # the runbook's own spelling
    assert finding.message == (
        "tables unknown (no name with case or underscores); columns unknown (no name with "
        "case or underscores); new columns are spelled like updatedAt"
    )
