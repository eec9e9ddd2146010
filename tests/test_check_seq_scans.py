"""seq_scans: real sequential scans against small thresholds; index-heavy tables stay quiet."""

from __future__ import annotations

import psycopg
import pytest

from pgrunbook.config import Config
from pgrunbook.discover import discover
from pgrunbook.dsn import ConnInfo
from pgrunbook.findings import Severity
from tests.support import rows

# The statistics are flushed with pg_stat_force_next_flush() (PostgreSQL 15+).
pytestmark = pytest.mark.min_pg(15)

ONLY = ("seq_scans",)
SMALL = Config(checks={"seq_scans": {"min_seq_scans": 10, "min_rows_per_scan": 1000}})

SCHEMA = """
CREATE TABLE busy (id int PRIMARY KEY, val int);
CREATE TABLE keyed (id int PRIMARY KEY, val int);
INSERT INTO busy SELECT g, g % 100 FROM generate_series(1, 3000) g;
INSERT INTO keyed SELECT g, g % 100 FROM generate_series(1, 3000) g;
ANALYZE busy, keyed;
"""

# Both tables get 20 sequential scans of 3,000 rows; keyed also gets 100 lookups by key.
WORKLOAD = (
    "SELECT count(*) FROM busy WHERE val = 7;" * 20
    + "SELECT count(*) FROM keyed WHERE val = 7;" * 20
    + "SELECT val FROM keyed WHERE id = 5;" * 100
)


def _run_and_flush(info: ConnInfo, statements: str) -> None:
    """Run ``statements`` and make this backend write its statistics now (PostgreSQL 15+)."""
    with psycopg.connect(info.conninfo(), autocommit=True) as conn:
        conn.execute((statements + "SELECT pg_stat_force_next_flush();").encode())


@pytest.fixture
def scanned_db(empty_db: ConnInfo) -> ConnInfo:
    _run_and_flush(empty_db, SCHEMA)
    _run_and_flush(empty_db, WORKLOAD)
    return empty_db


def test_heavy_sequential_scans_are_reported(scanned_db: ConnInfo) -> None:
    [(seq_scan, seq_tup_read, idx_scan)] = rows(
        scanned_db,
        "SELECT seq_scan, seq_tup_read, coalesce(idx_scan, 0) FROM pg_stat_user_tables"
        " WHERE relname = 'busy'",
    )
    assert isinstance(seq_scan, int) and seq_scan >= 20
    assert isinstance(seq_tup_read, int) and seq_tup_read >= 20 * 3000

    [finding] = discover(scanned_db, only=ONLY, config=SMALL).by_check("seq_scans")

    assert finding.severity is Severity.WARNING
    assert finding.object == "public.busy"
    assert finding.fix is None
    assert finding.details["seq_scan"] == seq_scan
    assert finding.details["seq_tup_read"] == seq_tup_read
    assert finding.details["idx_scan"] == idx_scan == 0
    assert finding.details["rows_per_scan"] == seq_tup_read / seq_scan
    assert finding.details["index_share"] == 0.0
    assert finding.details["estimated_rows"] == 3000
    assert "pgrunbook explain" in finding.message and "pg_stat_statements" in finding.message


def test_index_share_threshold_is_what_spares_the_keyed_table(scanned_db: ConnInfo) -> None:
    # keyed has the same sequential scans; only its index share (100 of 120+) differs.
    lenient = Config(checks={"seq_scans": {**SMALL.checks["seq_scans"], "max_index_share": 0.9}})
    found = discover(scanned_db, only=ONLY, config=lenient).by_check("seq_scans")
    assert sorted(f.object for f in found) == ["public.busy", "public.keyed"]


def test_default_thresholds_do_not_fire_on_light_use(scanned_db: ConnInfo, db: ConnInfo) -> None:
    assert discover(scanned_db, only=ONLY).by_check("seq_scans") == []
    assert discover(db, only=ONLY).by_check("seq_scans") == []
