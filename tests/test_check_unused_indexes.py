"""unused_indexes: young statistics give "insufficient evidence", old ones a verdict."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import psycopg
import pytest

from pgrunbook.catalog import Catalog, load_catalog
from pgrunbook.discover import StatsWindow, discover
from pgrunbook.discover.checks.unused_indexes import Thresholds, findings
from pgrunbook.discover.context import stats_window
from pgrunbook.dsn import ConnInfo
from pgrunbook.findings import Severity

# The statistics are flushed with pg_stat_force_next_flush() (PostgreSQL 15+).
pytestmark = pytest.mark.min_pg(15)

ONLY = ("unused_indexes",)

SCHEMA = """
CREATE TABLE item (
    id int PRIMARY KEY,
    sku text CONSTRAINT item_sku_key UNIQUE,
    code text,
    a int, b int, c int
);
CREATE UNIQUE INDEX item_code_idx ON item (code);
CREATE INDEX item_a_idx ON item (a);
CREATE INDEX item_b_idx ON item (b);
CREATE INDEX item_c_idx ON item (c);
INSERT INTO item SELECT g, 'sku' || g, 'code' || g, g, g, g FROM generate_series(1, 200) g;
ANALYZE item;
"""

# Index scans forced by disabling sequential scans: b ten times, c once, a never.
SCANS = (
    "SET enable_seqscan = off;"
    + "SELECT count(*) FROM item WHERE b = 5;" * 10
    + ("SELECT count(*) FROM item WHERE c = 5;")
)


def _run_and_flush(info: ConnInfo, statements: str) -> None:
    """Run ``statements`` and make this backend write its statistics now (PostgreSQL 15+)."""
    with psycopg.connect(info.conninfo(), autocommit=True) as conn:
        conn.execute((statements + "SELECT pg_stat_force_next_flush();").encode())


@pytest.fixture
def item_db(empty_db: ConnInfo) -> ConnInfo:
    _run_and_flush(empty_db, SCHEMA)
    _run_and_flush(empty_db, SCANS)
    return empty_db


def _snapshot(info: ConnInfo) -> tuple[Catalog, StatsWindow]:
    with psycopg.connect(info.conninfo(), autocommit=True) as conn:
        return load_catalog(conn, "public"), stats_window(conn)


def _old(stats: StatsWindow) -> StatsWindow:
    return StatsWindow(stats_reset=None, started_at=stats.now - timedelta(days=30), now=stats.now)


def test_counters_are_real(item_db: ConnInfo) -> None:
    catalog, _ = _snapshot(item_db)
    scans = {i.name: i.idx_scan for i in catalog.indexes()}
    assert scans["item_a_idx"] == 0
    assert scans["item_b_idx"] == 10
    assert scans["item_c_idx"] == 1
    assert catalog.by_name["item"].n_tup_ins == 200


def test_young_statistics_are_insufficient_evidence(item_db: ConnInfo) -> None:
    report = discover(item_db, only=ONLY)
    assert report.stats.age < timedelta(days=7)  # the test server has just started

    [finding] = report.by_check("unused_indexes")

    assert finding.severity is Severity.INFO
    assert finding.object == "public.item_a_idx"
    assert finding.fix is None  # no drop on two minutes of evidence
    assert finding.details["verdict"] == "insufficient_evidence"
    assert finding.details["idx_scan"] == 0
    assert finding.details["table_writes"] == 200
    assert finding.details["statistics"] == report.stats.to_json()
    assert finding.details["drop_sql"] == 'DROP INDEX CONCURRENTLY IF EXISTS "public"."item_a_idx";'
    assert report.facts["unused_indexes"] == report.stats.to_json()


def test_old_statistics_give_the_verdict(item_db: ConnInfo) -> None:
    catalog, stats = _snapshot(item_db)
    old = _old(stats)

    [finding] = findings(catalog, old, Thresholds())

    drop = 'DROP INDEX CONCURRENTLY IF EXISTS "public"."item_a_idx";'
    assert finding.severity is Severity.WARNING
    assert finding.object == "public.item_a_idx"
    assert finding.fix == drop
    assert finding.details["verdict"] == "unused"
    assert finding.details["idx_scan"] == 0
    sizes = {i.name: i.bytes for i in catalog.indexes()}
    assert finding.details["bytes"] == sizes["item_a_idx"] > 0
    assert finding.details["statistics"]["collecting_seconds"] == 30 * 86400
    assert finding.details["drop_sql"] == drop
    assert finding.details["recreate_sql"] == (
        "CREATE INDEX CONCURRENTLY item_a_idx ON public.item USING btree (a);"
    )


def test_rarely_used_relative_to_writes(item_db: ConnInfo) -> None:
    catalog, stats = _snapshot(item_db)
    limits = dataclasses.replace(Thresholds(), min_writes=100, max_scans_per_write=0.01)

    found = {f.object: f for f in findings(catalog, _old(stats), limits)}

    # c: 1 scan for 200 rows written (0.005 per write); b: 10 scans (0.05) is in use.
    assert sorted(found) == ["public.item_a_idx", "public.item_c_idx"]
    rare = found["public.item_c_idx"]
    assert rare.severity is Severity.WARNING
    assert rare.details["verdict"] == "rarely_used"
    assert rare.details["scans_per_write"] == 1 / 200
    # Too few writes to call anything rarely used: the default threshold (10,000).
    assert [f.object for f in findings(catalog, _old(stats), Thresholds())] == ["public.item_a_idx"]


def test_seeded_database_reports_only_insufficient_evidence(db: ConnInfo) -> None:
    found = discover(db, only=ONLY).by_check("unused_indexes")
    assert {f.severity for f in found} == {Severity.INFO}
    assert {f.details["verdict"] for f in found} == {"insufficient_evidence"}
    # Every non-unique index, the seed's deliberately unused one included; never a key.
    assert sorted(f.object for f in found) == [
        "public.Message_roomId_idx",
        "public.Message_roomId_legacy_idx",
        "public.Message_updatedAt_idx",
        "public.RefreshToken_userId_idx",
        "public.RoomMember_userId_idx",
        "public.Room_ownerId_idx",
    ]


def test_nothing_when_every_candidate_is_used(empty_db: ConnInfo) -> None:
    _run_and_flush(
        empty_db,
        "CREATE TABLE tag (id int PRIMARY KEY, name text UNIQUE, slug text);"
        "CREATE INDEX tag_slug_idx ON tag (slug);"
        "INSERT INTO tag SELECT g, 'n' || g, 's' || g FROM generate_series(1, 50) g;"
        "SET enable_seqscan = off; SELECT count(*) FROM tag WHERE slug = 's1';",
    )
    catalog, stats = _snapshot(empty_db)
    assert findings(catalog, _old(stats), Thresholds()) == []
