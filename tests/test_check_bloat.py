"""bloat: a churned table and its indexes, estimated and measured; fresh data stays quiet."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from psycopg import sql

from pgrunbook.config import Config
from pgrunbook.discover import discover
from pgrunbook.dsn import ConnInfo
from pgrunbook.findings import Finding, Severity
from tests.support import ROLE_PASSWORD, PgServer, execute, rows, scalar

ONLY = ("bloat",)
MIN_BYTES = 256 * 1024  # the test relations are 0.3 to 9 MB

# 100,000 rows, then 7 of every 10 deleted: every heap page and every leaf page keeps 30%
# of its rows, so VACUUM frees the space but cannot shrink either file. ``fresh`` is the
# same shape, loaded and left alone. ``nostats`` is churned too, but ANALYZE skips its
# ``note`` column, and ``unanalyzed`` is only vacuumed: their estimates have low confidence.
SETUP = """
CREATE TABLE churned (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                      k int NOT NULL, note text NOT NULL,
                      created_at timestamptz NOT NULL DEFAULT now());
CREATE INDEX churned_k_idx ON churned (k);
INSERT INTO churned (k, note) SELECT g, md5(g::text) FROM generate_series(1, 100000) g;
DELETE FROM churned WHERE id % 10 < 7;

CREATE TABLE fresh (id bigint PRIMARY KEY, k int NOT NULL, note text,
                    created_at timestamptz NOT NULL DEFAULT now());
INSERT INTO fresh (id, k, note)
SELECT g, g % 1000, CASE WHEN g % 5 = 0 THEN NULL ELSE repeat('x', g % 40) END
  FROM generate_series(1, 30000) g;
CREATE INDEX fresh_k_idx ON fresh (k);
CREATE INDEX fresh_lower_note_idx ON fresh (lower(note));

CREATE TABLE nostats (id int PRIMARY KEY, note text NOT NULL);
ALTER TABLE nostats ALTER COLUMN note SET STATISTICS 0;
INSERT INTO nostats SELECT g, md5(g::text) FROM generate_series(1, 20000) g;
DELETE FROM nostats WHERE id % 10 < 7;

CREATE TABLE unanalyzed (id int PRIMARY KEY, note text NOT NULL)
  WITH (autovacuum_enabled = off);
INSERT INTO unanalyzed SELECT g, md5(g::text) FROM generate_series(1, 20000) g;
DELETE FROM unanalyzed WHERE id % 10 < 7;

-- the changes above reach the cumulative statistics before ANALYZE resets the counters
SELECT pg_stat_force_next_flush();
"""


@pytest.fixture(scope="module")
def churned(pg_server: PgServer) -> Iterator[ConnInfo]:
    """One database for the module (loading it is the slow part), with pgstattuple."""
    name = f"t_bloat_{uuid.uuid4().hex[:8]}"
    info = pg_server.create_database(name)
    try:
        execute(info, SETUP)
        execute(info, "VACUUM (ANALYZE) churned, fresh, nostats")
        execute(info, "VACUUM unanalyzed")
        execute(info, "CREATE EXTENSION pgstattuple")
        yield info
    finally:
        pg_server.drop_database(name)


@pytest.fixture
def without_pgstattuple(churned: ConnInfo) -> Iterator[ConnInfo]:
    execute(churned, "DROP EXTENSION pgstattuple")
    try:
        yield churned
    finally:
        execute(churned, "CREATE EXTENSION pgstattuple")


def _bloat(info: ConnInfo, **limits: Any) -> dict[str, Finding]:
    config = Config(checks={"bloat": {"min_bytes": MIN_BYTES, **limits}})
    report = discover(info, only=ONLY, config=config)
    [status] = report.checks
    assert status.status == "ran", status.reason
    return {f.object: f for f in report.by_check("bloat")}


def _pgstattuple(info: ConnInfo, table: str) -> tuple[int, int]:
    [(free, dead)] = rows(
        info, "SELECT free_space, dead_tuple_len FROM pgstattuple(%s::regclass)", (table,)
    )
    return int(str(free)), int(str(dead))


def test_churned_table_and_indexes_measured_with_pgstattuple(churned: ConnInfo) -> None:
    found = _bloat(churned)

    assert set(found) == {
        "public.churned",
        "public.churned_pkey",
        "public.churned_k_idx",
        "public.nostats",
        "public.nostats_pkey",
        "public.unanalyzed",
        "public.unanalyzed_pkey",
    }
    table = found["public.churned"]
    free, dead = _pgstattuple(churned, "churned")
    assert table.severity is Severity.CRITICAL
    assert table.details["method"] == "pgstattuple"
    assert table.details["confidence"] == "high"
    assert table.details["confidence_reasons"] == []
    assert table.details["measured_wasted_bytes"] == free + dead  # fillfactor 100: no reserve
    assert table.details["actual_bytes"] == scalar(churned, "SELECT pg_relation_size('churned')")
    assert 0.6 < table.details["measured_ratio"] < 0.75
    assert abs(table.details["estimated_ratio"] - table.details["measured_ratio"]) < 0.05
    assert table.details["rewrite_needed"] is True  # vacuumed: the waste is free space
    assert table.fix == "pgrunbook maintain --full --table public.churned"
    assert table.details["vacuum_sql"] == 'VACUUM (ANALYZE) "public"."churned";'
    assert "measured with pgstattuple" in table.message
    assert "ACCESS EXCLUSIVE" in table.message

    for name in ("churned_pkey", "churned_k_idx"):
        index = found[f"public.{name}"]
        [(density, fragmentation)] = rows(
            churned,
            "SELECT avg_leaf_density, leaf_fragmentation FROM pgstatindex(%s::regclass)",
            (name,),
        )
        assert index.severity is Severity.CRITICAL
        assert index.details["method"] == "pgstatindex"
        assert index.details["avg_leaf_density"] == density
        assert index.details["leaf_fragmentation"] == fragmentation
        assert 0.6 < index.details["measured_ratio"] < 0.75
        assert abs(index.details["estimated_ratio"] - index.details["measured_ratio"]) < 0.05
        assert index.fix == f'REINDEX INDEX CONCURRENTLY "public"."{name}";'

    # the low-confidence estimate is measured too, and the measurement decides
    nostats = found["public.nostats"]
    assert nostats.severity is Severity.CRITICAL
    assert nostats.details["confidence"] == "low"
    assert nostats.details["confidence_reasons"] == ["no statistics for column(s) note"]
    assert nostats.details["method"] == "pgstattuple"


def test_large_tables_use_pgstattuple_approx_and_measuring_is_bounded(
    churned: ConnInfo,
) -> None:
    found = _bloat(churned, exact_max_bytes=0, max_measured=1)

    table = found["public.churned"]  # the largest waste: the one measured
    assert table.details["method"] == "pgstattuple_approx"
    assert 0.6 < table.details["measured_ratio"] < 0.75
    index = found["public.churned_k_idx"]
    assert index.details["method"] == "estimate"
    assert index.details["not_measured_because"] == "only the 1 largest are measured"
    assert index.severity is Severity.CRITICAL  # high confidence: the estimate may warn


def test_without_pgstattuple_the_finding_is_an_estimate(without_pgstattuple: ConnInfo) -> None:
    found = _bloat(without_pgstattuple)

    table = found["public.churned"]
    assert table.severity is Severity.CRITICAL
    assert table.details["method"] == "estimate"
    assert table.details["measured_wasted_bytes"] is None
    assert table.details["not_measured_because"] == "pgstattuple is not installed"
    assert 0.65 < table.details["estimated_ratio"] < 0.75
    assert "by estimate, high confidence; not measured: pgstattuple is not installed" in (
        table.message
    )
    assert found["public.churned_k_idx"].severity is Severity.CRITICAL
    # a low-confidence estimate alone never warns: info, with the reason
    nostats = found["public.nostats"]
    assert nostats.severity is Severity.INFO
    assert "low (no statistics for column(s) note) confidence" in nostats.message
    for name in ("unanalyzed", "unanalyzed_pkey"):
        unanalyzed = found[f"public.{name}"]
        assert unanalyzed.severity is Severity.INFO
        assert unanalyzed.details["confidence_reasons"] == ["the table was never analyzed"]
        assert unanalyzed.details["estimated_ratio"] > 0.6


def test_role_without_pgstattuple_rights_keeps_the_estimate(
    churned: ConnInfo, login_role: str
) -> None:
    role = sql.Identifier(login_role)
    grant = sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(role)
    execute(churned, grant.as_string())
    try:
        as_role = churned.with_params(user=login_role, password=ROLE_PASSWORD)
        found = _bloat(as_role)
    finally:
        revoke = sql.SQL("REVOKE SELECT ON ALL TABLES IN SCHEMA public FROM {}").format(role)
        execute(churned, revoke.as_string())

    table = found["public.churned"]
    assert table.severity is Severity.CRITICAL  # high confidence: the estimate stands
    assert table.details["method"] == "estimate"
    assert table.details["not_measured_because"] == (
        "this role may not run pgstattuple (grant it pg_stat_scan_tables)"
    )
    assert {f.details["method"] for f in found.values()} == {"estimate"}


def test_fresh_table_and_small_relations_do_not_fire(churned: ConnInfo) -> None:
    report = discover(churned, only=ONLY, config=Config(checks={"bloat": {"min_bytes": 1}}))
    judged = {j["object"]: j for j in report.facts["bloat"]["judged"]}
    for name in ("fresh", "fresh_pkey", "fresh_k_idx", "fresh_lower_note_idx"):
        assert judged[f"public.{name}"]["estimated_ratio"] < 0.1, name
        assert judged[f"public.{name}"]["confidence"] == "high", name
    assert not [f for f in report.by_check("bloat") if f.object.startswith("public.fresh")]

    # the default min_bytes (10 MB) leaves every relation here unjudged
    assert discover(churned, only=ONLY).by_check("bloat") == []


def test_seeded_database_has_no_bloat(db: ConnInfo) -> None:
    execute(db, "VACUUM (ANALYZE)")
    config = Config(checks={"bloat": {"min_bytes": 32 * 1024}})
    report = discover(db, only=ONLY, config=config)
    assert len(report.facts["bloat"]["judged"]) > 10
    assert report.by_check("bloat") == []
