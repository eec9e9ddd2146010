"""cache_hit: table and index cache hit ratios, judged only with enough evidence.

A database cloned block by block (``STRATEGY FILE_COPY``) is not in shared_buffers, so the
first reads of its tables and indexes are real misses: the test reads, waits for the
statistics, and moves the thresholds to them. (The default ``WAL_LOG`` strategy of
PostgreSQL 15+ copies through shared_buffers and leaves the clone's pages there.)
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pgrunbook.config import Config
from pgrunbook.discover import discover
from pgrunbook.dsn import ConnInfo
from pgrunbook.findings import Severity
from pgrunbook.reference import Naming
from tests.support import PgServer, Template, rows

CHECK = "cache_hit"
TOTALS_SQL = """
SELECT (SELECT coalesce(sum(heap_blks_hit), 0)::int8 FROM pg_statio_user_tables
         WHERE schemaname = 'public'),
       (SELECT coalesce(sum(heap_blks_read), 0)::int8 FROM pg_statio_user_tables
         WHERE schemaname = 'public'),
       (SELECT coalesce(sum(idx_blks_hit), 0)::int8 FROM pg_statio_user_indexes
         WHERE schemaname = 'public'),
       (SELECT coalesce(sum(idx_blks_read), 0)::int8 FROM pg_statio_user_indexes
         WHERE schemaname = 'public')
"""
# A sequential scan of Message's heap; a bitmap scan of User's email index (seqscan off).
READS = (
    'SELECT sum(length(content)) FROM "Message"',
    "SELECT count(*) FROM \"User\" WHERE email > ''",
)
JUDGE_NOW = {"min_block_accesses": 1, "min_observation_seconds": 0}


@pytest.fixture
def cold_db(pg_server: PgServer, templates: dict[Naming, Template]) -> Iterator[ConnInfo]:
    """A clone of the seeded database with none of its blocks in shared_buffers."""
    name = f"t_cold_{uuid.uuid4().hex[:12]}"
    query = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
        sql.Identifier(name), sql.Identifier(templates[Naming.PRISMA].name)
    )
    if pg_server.major >= 15:
        query += sql.SQL(" STRATEGY FILE_COPY")
    pg_server.execute(query)
    yield pg_server.dsn(name)
    pg_server.drop_database(name)


def _read(info: ConnInfo, times: int) -> None:
    """Run READS ``times`` times in one session and flush its statistics."""
    with psycopg.connect(info.conninfo(), autocommit=True) as conn:
        for _ in range(times):
            conn.execute("SET enable_seqscan = on")
            conn.execute(READS[0])
            conn.execute("SET enable_seqscan = off")
            conn.execute(READS[1])
        if conn.info.server_version >= 150000:  # flushed before this statement returns
            conn.execute("SELECT pg_stat_force_next_flush()")


def _totals(info: ConnInfo) -> tuple[int, int, int, int]:
    """(heap hits, heap reads, index hits, index reads), once the statistics show reads."""
    deadline = time.monotonic() + 10
    while True:
        ((heap_hit, heap_read, idx_hit, idx_read),) = rows(info, TOTALS_SQL)
        assert isinstance(heap_hit, int) and isinstance(heap_read, int)
        assert isinstance(idx_hit, int) and isinstance(idx_read, int)
        if (heap_read > 0 and idx_read > 0) or time.monotonic() > deadline:
            return heap_hit, heap_read, idx_hit, idx_read
        time.sleep(0.1)


def _run(info: ConnInfo, **limits: Any) -> Any:
    return discover(info, only=(CHECK,), config=Config(checks={CHECK: limits}))


def test_cold_reads_fall_below_a_strict_threshold(cold_db: ConnInfo) -> None:
    db = cold_db
    _read(db, times=1)
    heap_hit, heap_read, idx_hit, idx_read = _totals(db)
    assert heap_read > 0 and idx_read > 0, "a fresh clone's blocks are read, not hit"
    report = _run(db, min_table_ratio=0.9999, min_index_ratio=0.9999, **JUDGE_NOW)
    assert _totals(db) == (heap_hit, heap_read, idx_hit, idx_read)  # discovery read no table
    found = {f.details["kind"]: f for f in report.by_check(CHECK)}
    assert set(found) == {"table", "index"}
    for kind, hits, reads in (("table", heap_hit, heap_read), ("index", idx_hit, idx_read)):
        finding = found[kind]
        assert finding.severity is Severity.WARNING
        assert finding.object == f"database {db.dbname}"
        assert finding.details["hits"] == hits
        assert finding.details["reads"] == reads
        assert finding.details["ratio"] == hits / (hits + reads)
        assert finding.details["threshold"] == 0.9999
        assert finding.fix is None
        assert "shared_buffers" in finding.message
        assert f"{kind} cache hit ratio in schema public" in finding.message
    assert found["table"].details["most_reads"][0]["name"] in {"public.Message", "public.User"}
    facts = report.facts[CHECK]
    assert facts["table"]["ratio"] == heap_hit / (heap_hit + heap_read)
    assert facts["table"]["verdict"] == "below 99.99%"

    # the same statistics with too few accesses to judge: no finding, and the facts say why
    strict = {"min_table_ratio": 0.9999, "min_index_ratio": 0.9999, "min_observation_seconds": 0}
    few = _run(db, min_block_accesses=heap_hit + heap_read + idx_hit + idx_read + 1, **strict)
    assert few.by_check(CHECK) == []
    assert few.facts[CHECK]["table"]["verdict"].startswith("too little evidence")


def test_a_warm_cache_passes_the_usual_thresholds(cold_db: ConnInfo) -> None:
    db = cold_db
    _read(db, times=300)
    heap_hit, heap_read, idx_hit, idx_read = _totals(db)
    assert heap_read > 0 and idx_read > 0
    report = _run(db, **JUDGE_NOW)
    assert report.by_check(CHECK) == []
    facts = report.facts[CHECK]
    assert facts["table"]["verdict"] == "at or above 99%"
    assert facts["index"]["verdict"] == "at or above 95%"
    assert facts["table"]["ratio"] == heap_hit / (heap_hit + heap_read) >= 0.99
    assert facts["index"]["ratio"] == idx_hit / (idx_hit + idx_read) >= 0.95


def test_the_defaults_do_not_judge_a_clean_clone(db: ConnInfo) -> None:
    report = discover(db, only=(CHECK,))
    assert report.by_check(CHECK) == []
    facts = report.facts[CHECK]
    assert facts["table"] == {
        "hits": 0,
        "reads": 0,
        "ratio": None,
        "verdict": facts["table"]["verdict"],
    }
    assert facts["table"]["verdict"].startswith("too little evidence")
