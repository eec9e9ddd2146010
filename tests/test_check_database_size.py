"""database_size: pg_database_size against the plan's storage limit (--plan-limit)."""

from __future__ import annotations

from pgrunbook.discover import discover
from pgrunbook.dsn import ConnInfo
from pgrunbook.findings import Severity
from tests.support import rows, scalar

CHECK = "database_size"
LARGEST_SQL = """
SELECT 'public.' || c.relname, pg_total_relation_size(c.oid)
  FROM pg_class c
 WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
 ORDER BY 2 DESC, c.relname
 LIMIT 5
"""


def _size(info: ConnInfo) -> int:
    size = scalar(info, "SELECT pg_database_size(current_database())")
    assert isinstance(size, int)
    return size


def test_a_database_at_its_limit_is_critical(db: ConnInfo) -> None:
    size = _size(db)
    report = discover(db, only=(CHECK,), plan_limit_bytes=size)
    (finding,) = report.by_check(CHECK)
    assert finding.severity is Severity.CRITICAL
    assert finding.object == f"database {db.dbname}"
    assert finding.details["bytes"] == size
    assert finding.details["limit_bytes"] == size
    assert finding.details["ratio"] == 1.0
    largest = rows(db, LARGEST_SQL)
    assert [(t["table"], t["total_bytes"]) for t in finding.details["largest_tables"]] == largest
    assert finding.details["largest_tables"][0]["table"] == "public.Message"
    assert "writes fail once the plan's storage is full" in finding.message
    assert finding.fix == "pgrunbook cleanup"


def test_a_database_just_under_its_limit_is_a_warning(db: ConnInfo) -> None:
    size = _size(db)
    (finding,) = discover(db, only=(CHECK,), plan_limit_bytes=size + 1).by_check(CHECK)
    assert finding.severity is Severity.WARNING
    assert finding.details["ratio"] == size / (size + 1)
    assert "close to the limit" in finding.message


def test_below_80_percent_or_without_a_limit_nothing_fires(db: ConnInfo) -> None:
    size = _size(db)
    below = discover(db, only=(CHECK,), plan_limit_bytes=int(size / 0.8) + 1)
    assert below.by_check(CHECK) == []
    assert below.facts[CHECK]["ratio"] < 0.8
    # not a Neon host and no --plan-limit: only the size, as a fact
    report = discover(db, only=(CHECK,))
    assert report.by_check(CHECK) == []
    assert report.facts[CHECK]["bytes"] == size
    assert report.facts[CHECK]["limit_bytes"] is None
    assert report.facts[CHECK]["ratio"] is None
