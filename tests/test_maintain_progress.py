"""maintain's progress: a second session follows a real VACUUM in pg_stat_progress_vacuum."""

from __future__ import annotations

from typing import Any, Final

import psycopg

from pgrunbook.dsn import ConnInfo
from pgrunbook.maintain.choose import choose
from pgrunbook.maintain.progress import VacuumProgress, VacuumWatch, vacuum_progress
from pgrunbook.maintain.run import maintain
from tests.support import scalar

# 60,000 rows (about 266 heap blocks), every other one deleted: the VACUUM scans the whole
# heap, vacuums the index and the heap, and cannot truncate.
SETUP: Final = (
    "CREATE TABLE churn (id int PRIMARY KEY, v int NOT NULL)",
    "INSERT INTO churn SELECT g, g FROM generate_series(1, 60000) g",
    "DELETE FROM churn WHERE id % 2 = 0",
)
BLOCKS_SQL: Final = "SELECT pg_relation_size('churn') / current_setting('block_size')::int8"
# pg_stat_progress_vacuum's phases, in the order a VACUUM goes through them.
PHASES: Final = (
    "initializing",
    "scanning heap",
    "vacuuming indexes",
    "vacuuming heap",
    "cleaning up indexes",
    "truncating heap",
    "performing final cleanup",
)


def _connect(info: ConnInfo) -> psycopg.Connection[Any]:
    return psycopg.connect(info.conninfo(), password=info.password, autocommit=True)


def _throttled(conn: psycopg.Connection[Any]) -> None:
    """Make this session's VACUUM sleep 1 ms after every page or so: about a second for
    the table and its index, long enough to be watched."""
    conn.execute("SET vacuum_cost_delay = '1ms'")
    conn.execute("SET vacuum_cost_limit = 1")


def test_watch_follows_maintains_vacuum_through_its_phases(empty_db: ConnInfo) -> None:
    with _connect(empty_db) as conn:
        for statement in SETUP:
            conn.execute(statement.encode())
        blocks = scalar(empty_db, BLOCKS_SQL)
        assert isinstance(blocks, int) and blocks > 200
        choice = choose(conn, "public", ["churn"])
        assert [t.name for t in choice.tables] == ["churn"]
        _throttled(conn)
        pid = conn.info.backend_pid
        seen: list[VacuumProgress] = []
        started: list[str] = []
        with VacuumWatch(empty_db, pid, seen.append, poll_seconds=0.02) as watch:
            report = maintain(conn, choice, on_start=started.append)
        assert watch.error is None
        assert started == ['VACUUM (ANALYZE) "public"."churn"']
        assert [r.table.name for r in report.tables] == ["churn"]

    assert len(seen) >= 10, seen
    assert {p.pid for p in seen} == {pid}
    assert {p.table_name for p in seen} == {"churn"}
    assert {p.heap_blks_total for p in seen} == {blocks}
    scanned = [p.heap_blks_scanned for p in seen]
    assert scanned == sorted(scanned)
    fractions = [p.fraction for p in seen if p.phase == "scanning heap"]
    assert any(f is not None and 0 < f < 1 for f in fractions), fractions
    phases = list(dict.fromkeys(p.phase for p in seen))
    assert "scanning heap" in phases
    assert phases == sorted(phases, key=PHASES.index)  # in VACUUM's order, none unknown
    mid = next(p for p in seen if p.phase == "scanning heap" and 0 < (p.fraction or 0) < 1)
    assert mid.describe() == (
        f"scanning heap {mid.fraction:.0%} ({mid.heap_blks_scanned:,} of {blocks:,} blocks)"
    )
    with _connect(empty_db) as other:
        assert vacuum_progress(other, pid) is None  # the VACUUM is over


def test_watch_sees_nothing_without_a_vacuum(empty_db: ConnInfo) -> None:
    with _connect(empty_db) as conn:
        conn.execute("SELECT pg_sleep(0.3)")  # warm: the session exists
        seen: list[VacuumProgress] = []
        with VacuumWatch(empty_db, conn.info.backend_pid, seen.append, poll_seconds=0.02) as w:
            conn.execute("SELECT pg_sleep(0.3)")
        assert (seen, w.error) == ([], None)
