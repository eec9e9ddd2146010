"""orphans: child rows whose parent is missing, for NOT VALID and inferred relations."""

from __future__ import annotations

from typing import Any

import pytest

from pgrunbook.config import Config
from pgrunbook.discover.run import discover
from pgrunbook.dsn import ConnInfo
from pgrunbook.findings import Finding, Severity
from pgrunbook.reference import Naming
from tests.support import Template, execute, rows

NAMINGS = [("db", Naming.PRISMA), ("snake_db", Naming.SNAKE)]


def _orphans(info: ConnInfo, **overrides: Any) -> tuple[list[Finding], Any]:
    config = Config(checks={"orphans": overrides}) if overrides else None
    report = discover(info, only=("orphans",), config=config)
    assert [c.status for c in report.checks] == ["ran"]
    return report.by_check("orphans"), report.facts["orphans"]


def _listed_keys(info: ConnInfo, finding: Finding) -> set[str]:
    return {str(r[0]) for r in rows(info, finding.details["query"])}


@pytest.mark.parametrize(("fixture", "naming"), NAMINGS)
def test_seeded_orphans_exactly(
    request: pytest.FixtureRequest, fixture: str, naming: Naming, templates: dict[Naming, Template]
) -> None:
    info: ConnInfo = request.getfixturevalue(fixture)
    manifest = templates[naming].report.anomalies
    expected = {
        f"public.{naming.table('Message')}": manifest["orphan_messages"],
        f"public.{naming.table('GiftSend')}": manifest["orphan_gift_sends"],
        f"public.{naming.table('Notification')}": manifest["orphan_notifications"],
    }
    assert sorted(expected.values()) == [5, 6, 7]

    findings, facts = _orphans(info)

    assert {f.object: f.details["count"] for f in findings} == expected
    assert all(f.severity is Severity.WARNING for f in findings)
    parents = {"Message": "Room", "GiftSend": "Room", "Notification": "User"}
    columns = {"Message": "roomId", "GiftSend": "roomId", "Notification": "userId"}
    for child, parent in parents.items():
        finding = next(f for f in findings if f.object == f"public.{naming.table(child)}")
        assert finding.details["relation"] == {
            "child": f"public.{naming.table(child)}",
            "columns": [naming.column(columns[child])],
            "parent": f"public.{naming.table(parent)}",
            "parent_columns": ["id"],
            "source": "inferred",
            "constraint": None,
        }
        assert finding.details["sampled"] is False
        listed = _listed_keys(info, finding)
        assert len(listed) == finding.details["count"]
        assert len(finding.details["samples"]) == 5
        assert set(finding.details["samples"]) <= listed
        assert finding.fix is not None and finding.fix.startswith("DELETE FROM")
    # Report.messageId is inferred too, and clean: counted, not reported.
    checked = {fact["relation"]: fact["count"] for fact in facts}
    report_rel = (
        f"public.{naming.table('Report')}({naming.column('messageId')}) -> "
        f"public.{naming.table('Message')}(id)"
    )
    assert checked[report_rel] == 0
    assert len(checked) == 4


def test_fix_removes_the_orphans_and_then_nothing_fires(db: ConnInfo) -> None:
    findings, _ = _orphans(db)
    assert len(findings) == 3
    for finding in findings:
        assert finding.fix is not None
        execute(db, finding.fix)
    assert _orphans(db)[0] == []


def test_clean_schema_with_relations_gives_nothing(empty_db: ConnInfo) -> None:
    execute(
        empty_db,
        "CREATE TABLE room (id int PRIMARY KEY);"
        "CREATE TABLE message (id int PRIMARY KEY, room_id int REFERENCES room);"
        "CREATE TABLE note (id int PRIMARY KEY, room_id int);"  # inferred, all parents exist
        "INSERT INTO room SELECT generate_series(1, 10);"
        "INSERT INTO message SELECT g, g % 10 + 1 FROM generate_series(1, 100) g;"
        "INSERT INTO note SELECT g, CASE WHEN g % 2 = 0 THEN g % 10 + 1 END "
        "FROM generate_series(1, 100) g;",  # half NULL: not orphans
    )
    findings, facts = _orphans(empty_db)
    assert findings == []
    assert facts == [
        {
            "relation": "public.note(room_id) -> public.room(id)",
            "source": "inferred",
            "count": 0,
            "sampled": False,
            "timed_out": False,
        }
    ]


def test_not_valid_foreign_key_with_orphans(db: ConnInfo) -> None:
    execute(
        db,
        'ALTER TABLE "Message" ADD CONSTRAINT message_room_fk FOREIGN KEY ("roomId") '
        'REFERENCES "Room" (id) NOT VALID',
    )
    findings, _ = _orphans(db)
    finding = next(f for f in findings if f.object == "public.Message")
    assert finding.severity is Severity.WARNING
    assert finding.details["count"] == 7
    assert finding.details["relation"]["source"] == "foreign_key"
    assert finding.details["relation"]["constraint"] == "message_room_fk"
    assert "NOT VALID" in finding.message
    assert finding.fix is not None
    assert 'ALTER TABLE "public"."Message" VALIDATE CONSTRAINT "message_room_fk";' in finding.fix
    execute(db, finding.fix)  # deletes the orphans, then the validation succeeds
    assert rows(db, "SELECT convalidated FROM pg_constraint WHERE conname = 'message_room_fk'") == [
        (True,)
    ]


def _big_child(info: ConnInfo, rows_: int, parents: int) -> None:
    """``item.shop_id`` -> ``shop``: every other row points at a missing shop."""
    execute(
        info,
        "CREATE TABLE shop (id int PRIMARY KEY);"
        "CREATE TABLE item (id int PRIMARY KEY, shop_id int, pad text);"
        f"INSERT INTO shop SELECT generate_series(1, {parents});"
        "INSERT INTO item SELECT g, CASE WHEN g % 2 = 0 THEN g % "
        f"{parents} + 1 ELSE {parents} + g END, repeat('x', 40) "
        f"FROM generate_series(1, {rows_}) g;"
        "ANALYZE shop, item;",
    )


def test_timed_out_count_is_an_info_finding(empty_db: ConnInfo) -> None:
    _big_child(empty_db, 200_000, 1000)
    findings, facts = _orphans(empty_db, statement_timeout_ms=1)
    assert len(findings) == 1
    finding = findings[0]
    assert finding.severity is Severity.INFO
    assert finding.object == "public.item"
    assert finding.details["timed_out"] is True
    assert finding.details["count"] is None
    assert finding.message.startswith("could not count the orphan rows within 0.001 s")
    assert finding.fix is None
    assert facts[0]["timed_out"] is True


def test_large_table_is_counted_on_a_sample(empty_db: ConnInfo) -> None:
    _big_child(empty_db, 100_000, 1000)
    findings, _ = _orphans(empty_db, sample_above_bytes=0, sample_percent=20.0)
    assert len(findings) == 1
    finding = findings[0]
    assert finding.severity is Severity.WARNING
    assert finding.details["sampled"] is True
    assert finding.details["sample_percent"] == 20.0
    assert 35_000 <= finding.details["count"] <= 65_000  # 50,000 really
    assert finding.message.startswith("about ")
    assert "20% sample" in finding.message
    orphan_ids = {str(i) for i in range(1, 100_001, 2)}
    assert len(finding.details["samples"]) == 5
    assert set(finding.details["samples"]) <= orphan_ids
