"""``pgrunbook monitor``: every section against real sessions on a real server."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from rich.console import Console

from pgrunbook.cli.monitor import render
from pgrunbook.dsn import ConnInfo
from pgrunbook.embedded import LocalServer
from pgrunbook.monitor import LockSession, Snapshot, Thresholds, build_tree, snapshot
from pgrunbook.monitor.replication import ReplicaLag, replica_lag
from tests.support import ROLE_PASSWORD, PgServer, execute, rows, scalar

SAFETY_TIMEOUT = "15s"  # no test statement may wait longer than this, whatever happens
TABLE_SQL = """
CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL);
INSERT INTO t SELECT g, 0 FROM generate_series(1, 100) g;
"""

# The documented top-level keys of a snapshot's JSON, in order (docs/monitor.md).
SNAPSHOT_KEYS = [
    "taken_at",
    "server",
    "connections",
    "long_running",
    "idle_in_transaction",
    "locks",
    "cache",
    "dead_tuples",
    "index_usage",
    "replication",
    "statements",
]


def session(info: ConnInfo, name: str, *, autocommit: bool = True) -> psycopg.Connection[Any]:
    conn = psycopg.connect(info.conninfo(), autocommit=autocommit, application_name=name)
    conn.execute(f"SET statement_timeout = '{SAFETY_TIMEOUT}'")
    if not autocommit:
        conn.commit()
    return conn


class Waiter:
    """Runs one statement in a thread; the statement is expected to block."""

    def __init__(self, conn: psycopg.Connection[Any], statement: str) -> None:
        self.conn = conn
        self.pid = conn.info.backend_pid
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(statement,), daemon=True)
        self.thread.start()

    def _run(self, statement: str) -> None:
        try:
            self.conn.execute(statement.encode())
        except psycopg.Error as exc:
            self.error = exc

    def join(self) -> None:
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()


def wait_until(info: ConnInfo, condition: str, pid: int, seconds: float = 10.0) -> None:
    """Poll pg_stat_activity until the session ``pid`` meets ``condition``."""
    deadline = time.monotonic() + seconds
    query = f"SELECT count(*) FROM pg_stat_activity WHERE pid = %s AND ({condition})"
    while time.monotonic() < deadline:
        if scalar(info, query, (pid,)) == 1:
            return
        time.sleep(0.02)
    raise AssertionError(f"session {pid} never met {condition}")


def waiting_for_lock(info: ConnInfo, pid: int) -> None:
    wait_until(info, "wait_event_type = 'Lock'", pid)


@contextmanager
def closing(*conns: psycopg.Connection[Any]) -> Iterator[None]:
    try:
        yield
    finally:
        for conn in conns:
            conn.close()


# -- lock waits ---------------------------------------------------------------------------


@contextmanager
def lock_chain(info: ConnInfo) -> Iterator[tuple[int, int, int]]:
    """A holds a row lock, B waits on A for the row, C queues ACCESS EXCLUSIVE behind both.

    Yields the pids (A, B, C) while they wait; releases everything afterwards.
    """
    execute(info, TABLE_SQL)
    a = session(info, "holder-a", autocommit=False)
    b = session(info, "waiter-b")
    c = session(info, "waiter-c", autocommit=False)
    pa = a.info.backend_pid
    with closing(a, b, c):
        a.execute("UPDATE t SET v = v + 1 WHERE id = 1")
        wb = Waiter(b, "UPDATE t SET v = v + 2 WHERE id = 1")
        waiting_for_lock(info, wb.pid)
        wc = Waiter(c, "LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
        waiting_for_lock(info, wc.pid)
        try:
            yield pa, wb.pid, wc.pid
        finally:
            a.rollback()
            wb.join()
            wc.join()
            c.rollback()
        assert wb.error is None and wc.error is None


def test_blocked_lock_chain(empty_db: ConnInfo) -> None:
    with lock_chain(empty_db) as (pa, pb, pc):
        snap = snapshot(empty_db)

    tree = snap.locks
    assert tree.cycles == []
    assert tree.waiting == 2
    assert [root.session.pid for root in tree.roots] == [pa]
    root = tree.roots[0]
    assert root.blocked_by == []
    assert root.session.state == "idle in transaction"
    assert root.session.application_name == "holder-a"
    assert root.session.lock_mode is None and root.session.waiting_seconds is None
    assert root.session.query == "UPDATE t SET v = v + 1 WHERE id = 1"
    assert root.session.transaction_seconds is not None
    # C waits for both (A's and B's ROW EXCLUSIVE locks on t): it hangs under A, next to B
    assert [n.session.pid for n in root.blocking] == sorted([pb, pc])
    node_b, node_c = (tree.find(pb), tree.find(pc))
    assert node_b is not None and node_c is not None
    assert node_b.blocked_by == [pa]
    assert node_b.blocking == []
    assert node_b.session.state == "active"
    assert node_b.session.wait_event_type == "Lock"
    assert node_b.session.wait_event == "transactionid"
    assert (node_b.session.lock_type, node_b.session.lock_mode) == ("transactionid", "ShareLock")
    assert node_b.session.lock_relation == "public.t"
    assert node_b.session.waiting_seconds is not None
    assert node_c.blocked_by == sorted([pa, pb])
    assert node_c.blocking == []
    assert (node_c.session.lock_type, node_c.session.lock_mode) == (
        "relation",
        "AccessExclusiveLock",
    )
    assert node_c.session.lock_relation == "public.t"
    assert node_c.session.query == "LOCK TABLE t IN ACCESS EXCLUSIVE MODE"

    document = snap.to_json()["locks"]
    assert document["waiting"] == 2
    assert document["cycles"] == []
    [root_json] = document["roots"]
    assert root_json["pid"] == pa
    assert root_json["lock"] is None
    assert root_json["blocked_by"] == []
    children = {child["pid"]: child for child in root_json["blocking"]}
    assert set(children) == {pb, pc}
    assert children[pb]["lock"] == {
        "type": "transactionid",
        "mode": "ShareLock",
        "relation": "public.t",
    }
    assert children[pc]["blocked_by"] == sorted([pa, pb])
    assert children[pc]["lock"]["mode"] == "AccessExclusiveLock"
    assert children[pc]["blocking"] == []

    # the snapshot read t's statistics without queueing behind C's ACCESS EXCLUSIVE request
    # (it would have failed on its lock timeout), and lists A as idle in its transaction
    assert [s.table for s in snap.index_usage.tables] == ["public.t"]
    assert [(s.pid, s.application_name) for s in snap.idle_in_transaction] == [(pa, "holder-a")]


def test_lock_chain_seen_by_a_role_without_privileges(
    pg_server: PgServer, empty_db: ConnInfo, login_role: str
) -> None:
    """Other roles' states and queries are hidden from it, but not who blocks whom."""
    if pg_server.local is None:
        pytest.skip("logs in as a new role, which depends on the embedded server's pg_hba.conf")
    weak = empty_db.with_params(user=login_role, password=ROLE_PASSWORD)
    with lock_chain(empty_db) as (pa, pb, pc):
        snap = snapshot(weak)
    assert [(n.session.pid, n.blocked_by) for n in snap.locks.roots[0].walk()] == [
        (pa, []),
        *sorted([(pb, [pa]), (pc, sorted([pa, pb]))]),
    ]
    node_c = snap.locks.find(pc)
    assert node_c is not None
    assert (node_c.session.state, node_c.session.query) == (None, "<insufficient privilege>")
    assert (node_c.session.lock_mode, node_c.session.lock_relation) == (
        "AccessExclusiveLock",
        "public.t",
    )
    assert {s.state: s.count for s in snap.connections.by_state} == {"unknown": 3}
    assert snap.connections.database_total == 4
    assert {a.application_name: a.count for a in snap.connections.by_application} == {
        "holder-a": 1,
        "waiter-b": 1,
        "waiter-c": 1,
    }
    assert snap.idle_in_transaction == []


def test_deadlock_cycle_is_shown_once(empty_db: ConnInfo) -> None:
    """Two sessions waiting for each other (before deadlock_timeout) form a cycle."""
    execute(empty_db, TABLE_SQL)
    a = session(empty_db, "cycle-a", autocommit=False)
    b = session(empty_db, "cycle-b", autocommit=False)
    with closing(a, b):
        for conn in (a, b):
            conn.execute("SET deadlock_timeout = '10s'")
        a.execute("UPDATE t SET v = 1 WHERE id = 1")
        b.execute("UPDATE t SET v = 1 WHERE id = 2")
        wa = Waiter(a, "UPDATE t SET v = 2 WHERE id = 2")
        waiting_for_lock(empty_db, wa.pid)
        wb = Waiter(b, "UPDATE t SET v = 2 WHERE id = 1")
        waiting_for_lock(empty_db, wb.pid)
        try:
            snap = snapshot(empty_db)
        finally:
            scalar(empty_db, "SELECT pg_cancel_backend(%s)", (wb.pid,))
            wb.join()
            wa.join()
            a.rollback()
            b.rollback()

    pa, pb = wa.pid, wb.pid
    tree = snap.locks
    assert tree.cycles == [sorted([pa, pb])]
    assert tree.waiting == 2
    first, second = sorted([pa, pb])
    assert [root.session.pid for root in tree.roots] == [first]
    root = tree.roots[0]
    assert root.in_cycle and root.blocked_by == [second]
    assert [(n.session.pid, n.blocked_by, n.in_cycle) for n in root.blocking] == [
        (second, [first], True)
    ]
    assert root.blocking[0].blocking == []
    assert isinstance(wb.error, psycopg.errors.QueryCanceled) and wa.error is None


def _s(pid: int, *blockers: int) -> LockSession:
    return LockSession(pid, list(blockers), True)


def _shape(tree: Any) -> list[Any]:
    def node(n: Any) -> Any:
        return (n.session.pid, [node(c) for c in n.blocking])

    return [node(r) for r in tree.roots]


def test_tree_of_a_lock_queue_stays_flat() -> None:
    """Each LOCK TABLE session in a queue is blocked by the holder and all before it."""
    count = 60
    sessions = [_s(1)] + [_s(pid, *range(1, pid)) for pid in range(2, count + 1)]
    tree = build_tree(sessions)
    assert tree.cycles == []
    assert tree.waiting == count - 1
    assert _shape(tree) == [(1, [(pid, []) for pid in range(2, count + 1)])]
    last = tree.find(count)
    assert last is not None and last.blocked_by == list(range(1, count))


def test_tree_of_a_hot_row() -> None:
    """A holds the row, B waits for A's transaction, the rest queue for B's tuple lock."""
    sessions = [_s(1), _s(2, 1), _s(3, 2), _s(4, 2, 3), _s(5, 2, 3, 4)]
    assert _shape(build_tree(sessions)) == [(1, [(2, [(3, []), (4, []), (5, [])])])]


def test_tree_with_two_roots_a_cycle_and_a_prepared_transaction() -> None:
    sessions = [
        _s(10),  # a root blocking two
        _s(11, 10),
        _s(12, 10),
        _s(13, 12, 11),  # blocked by both of them: under the lower pid of equal depth
        _s(14, 13, 10),  # under the blocker closest to a root
        _s(20, 21),  # 20 and 21 wait for each other, 22 waits for 21
        _s(21, 20),
        _s(22, 21),
        _s(30, 0),  # blocked by a prepared transaction (pid 0, not in pg_stat_activity)
    ]
    tree = build_tree(sessions)
    assert tree.cycles == [[20, 21]]
    assert _shape(tree) == [
        (10, [(11, [(13, [])]), (12, []), (14, [])]),
        (20, [(21, [(22, [])])]),
        (0, [(30, [])]),
    ]
    prepared = tree.find(0)
    assert prepared is not None and prepared.session.connected is False
    node = tree.find(22)
    assert node is not None and not node.in_cycle
    node = tree.find(13)
    assert node is not None and node.blocked_by == [11, 12]


def test_tree_of_a_long_cycle_does_not_recurse() -> None:
    count = 5000  # deeper than Python's recursion limit
    sessions = [_s(pid, pid % count + 1) for pid in range(1, count + 1)]  # 1 waits for 2, ...
    tree = build_tree(sessions)
    assert tree.cycles == [list(range(1, count + 1))]
    [root] = tree.roots
    assert root.session.pid == 1 and root.in_cycle and root.blocked_by == [2]
    assert root.descendants() == count - 1
    assert tree.waiting == count
    document = root.to_json()
    for _ in range(count - 1):
        [document] = document["blocking"]
    assert (document["pid"], document["blocking"]) == (2, [])


# -- activity -----------------------------------------------------------------------------


def test_idle_in_transaction_with_its_age(empty_db: ConnInfo) -> None:
    idle = session(empty_db, "idler", autocommit=False)
    pid = idle.info.backend_pid
    with closing(idle):
        idle.execute("SELECT 42")
        time.sleep(0.3)
        snap = snapshot(empty_db)
        idle.rollback()
    [found] = snap.idle_in_transaction
    assert found.pid == pid
    assert found.application_name == "idler"
    assert found.state == "idle in transaction"
    assert found.last_query == "SELECT 42"
    assert 0.3 <= found.idle_seconds < 30
    assert found.transaction_seconds >= found.idle_seconds
    assert snap.long_running == []
    assert snap.locks.roots == []
    states = {s.state: s.count for s in snap.connections.by_state}
    assert states == {"idle in transaction": 1}
    apps = {a.application_name: a for a in snap.connections.by_application}
    assert set(apps) == {"idler"}
    assert (apps["idler"].count, apps["idler"].idle_in_transaction) == (1, 1)


def test_long_running_query_over_the_threshold(empty_db: ConnInfo) -> None:
    sleeper = session(empty_db, "sleeper")
    with closing(sleeper):
        w = Waiter(sleeper, "SELECT pg_sleep(20)")
        wait_until(empty_db, "state = 'active' AND query LIKE '%%pg_sleep%%'", w.pid)
        time.sleep(0.2)
        try:
            long = snapshot(empty_db, thresholds=Thresholds(long_query_seconds=0))
            default = snapshot(empty_db)
        finally:
            scalar(empty_db, "SELECT pg_cancel_backend(%s)", (w.pid,))
            w.join()
    [found] = long.long_running
    assert found.pid == w.pid != long.monitor_pid
    assert found.query == "SELECT pg_sleep(20)"
    assert found.application_name == "sleeper"
    assert 0.2 <= found.duration_seconds < 20
    assert found.wait_event == "PgSleep"
    assert default.long_running == []  # not 60 s old yet
    assert {s.state: s.count for s in long.connections.by_state} == {"active": 1}
    assert long.connections.database_total == 2  # the monitor's own session is in the totals


# -- statistics sections ------------------------------------------------------------------


def _flush(conn: psycopg.Connection[Any]) -> None:
    conn.execute("SELECT pg_stat_force_next_flush()")
    conn.execute("SELECT 1")


def test_dead_tuples_index_usage_and_cache(empty_db: ConnInfo) -> None:
    conn = session(empty_db, "worker")
    with closing(conn):
        # one session inserts and deletes: the server clamps a table's live count at 0, so a
        # DELETE flushed before another session's INSERT would leave 100 live rows, not 75
        conn.execute((TABLE_SQL + "CREATE TABLE quiet (id int PRIMARY KEY);").encode())
        conn.execute("DELETE FROM t WHERE id <= 25")
        _flush(conn)
        [before] = [s for s in snapshot(empty_db).index_usage.tables if s.table == "public.t"]
        conn.execute("SET enable_seqscan = off")
        for _ in range(3):
            conn.execute("SELECT v FROM t WHERE id = 50").fetchall()
        conn.execute("SET enable_seqscan = on")
        conn.execute("SET enable_indexscan = off")
        conn.execute("SET enable_bitmapscan = off")
        for _ in range(2):
            conn.execute("SELECT v FROM t WHERE v = 0").fetchall()
        _flush(conn)
    snap = snapshot(empty_db)

    [dead] = snap.dead_tuples
    assert (dead.table, dead.dead_tuples, dead.live_tuples) == ("public.t", 25, 75)
    assert dead.dead_ratio == pytest.approx(0.25)
    assert (dead.last_autovacuum, dead.last_vacuum, dead.autovacuum_count) == (None, None, 0)

    [after] = [s for s in snap.index_usage.tables if s.table == "public.t"]
    assert (after.seq_scan - before.seq_scan, after.idx_scan - before.idx_scan) == (2, 3)
    assert after.seq_tup_read - before.seq_tup_read == 2 * 75
    assert after.index_share == after.idx_scan / (after.idx_scan + after.seq_scan)
    least = snap.index_usage.least_used_indexes
    assert [(i.index, i.table, i.idx_scan, i.primary) for i in least] == [
        ("public.quiet_pkey", "public.quiet", 0, True),
        ("public.t_pkey", "public.t", after.idx_scan, True),
    ]

    hit, read = rows(
        empty_db,
        "SELECT sum(heap_blks_hit)::int8, sum(heap_blks_read)::int8 FROM pg_statio_user_tables "
        "WHERE schemaname = 'public'",
    )[0]
    assert (snap.cache.tables.hit, snap.cache.tables.read) == (hit, read)
    assert snap.cache.tables.ratio == hit / (hit + read)  # type: ignore[operator]
    assert snap.cache.database.ratio is not None and 0 < snap.cache.database.ratio <= 1
    assert snap.cache.indexes.hit > 0


@pytest.fixture(scope="module")
def streaming(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ConnInfo, ConnInfo]]:
    """A primary and a hot standby streaming from it: (primary, standby)."""
    if os.environ.get("PGRUNBOOK_TEST_DSN"):
        pytest.skip("starts its own pair of embedded servers")
    root = tmp_path_factory.mktemp("replication")
    primary = LocalServer(
        root / "primary", extra_hba=["host replication postgres 127.0.0.1/32 trust"]
    )
    standby = LocalServer(root / "standby")
    try:
        info = primary.start()
        subprocess.run(
            [
                primary.binaries.tool("pg_basebackup"),
                *("-D", str(standby.data_dir), "-R", "-X", "stream", "--no-sync"),
                *("-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres"),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        if standby.run_as is not None:
            for path in [standby.data_dir, *standby.data_dir.rglob("*")]:
                shutil.chown(path, standby.run_as, standby.run_as)
        standby.data_dir.chmod(0o700)
        yield info, standby.start()
    finally:
        standby.stop()
        primary.stop()


def test_replication_on_a_primary_and_its_standby(streaming: tuple[ConnInfo, ConnInfo]) -> None:
    primary, standby = streaming
    execute(
        primary, "CREATE TABLE replicated (id int PRIMARY KEY); INSERT INTO replicated VALUES (1)"
    )
    deadline = time.monotonic() + 10
    while scalar(standby, "SELECT count(*) FROM pg_class WHERE relname = 'replicated'") != 1:
        assert time.monotonic() < deadline, "the standby never replayed the table"
        time.sleep(0.05)
    while (
        scalar(primary, "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'") != 1
    ):
        assert time.monotonic() < deadline, "the standby never streamed"
        time.sleep(0.05)

    on_primary = snapshot(primary)
    assert on_primary.replication.role == "primary"
    assert on_primary.replication.replica is None
    [walsender] = on_primary.replication.standbys
    assert walsender.state == "streaming"
    assert walsender.sync_state == "async"
    assert walsender.client_addr == "127.0.0.1"
    assert walsender.replay_lag_bytes is not None and walsender.replay_lag_bytes >= 0
    assert on_primary.to_json()["server"]["in_recovery"] is False

    on_standby = snapshot(standby)
    assert on_standby.replication.role == "replica"
    assert on_standby.replication.standbys == []
    lag = on_standby.replication.replica
    assert lag is not None
    assert lag.receive_lsn is not None and lag.replay_lsn is not None
    assert lag.replay_lag_bytes is not None and lag.replay_lag_bytes >= 0
    assert lag.replay_paused is False
    assert lag.last_replay_at is not None and lag.replay_lag_seconds is not None
    document = on_standby.to_json()
    assert document["server"]["in_recovery"] is True
    assert document["replication"]["replica"]["replay_lag_bytes"] == lag.replay_lag_bytes

    assert "streaming   async" in shown(on_primary)
    assert "Replication: replica, last transaction replayed " in shown(on_standby)


def shown(snap: Snapshot) -> str:
    """The human rendering, as a 100-column terminal shows it."""
    console = Console(width=100, record=True, file=io.StringIO())
    console.print(render(snap))
    return console.export_text()


def test_replica_query_on_a_primary_is_all_null(empty_db: ConnInfo) -> None:
    with psycopg.connect(empty_db.conninfo()) as conn:
        lag = replica_lag(conn)
    assert lag == ReplicaLag(None, None, None, None, None, None)


def test_statements_not_installed_is_not_an_error(empty_db: ConnInfo) -> None:
    snap = snapshot(empty_db)
    assert snap.statements.available is False
    assert snap.statements.reason is not None
    assert "CREATE EXTENSION pg_stat_statements" in snap.statements.reason
    assert snap.statements.by_total == ()


def test_statements_outliers(empty_db: ConnInfo, pg_server: Any) -> None:
    if pg_server.local is None:
        pytest.skip("needs pg_stat_statements preloaded (the embedded server does)")
    execute(empty_db, "CREATE EXTENSION pg_stat_statements")
    conn = session(empty_db, "app")
    with closing(conn):
        for _ in range(6):
            conn.execute("SELECT pg_sleep(0.01) AS outlier")
        conn.execute("SELECT 1 AS once")
    snap = snapshot(empty_db, thresholds=Thresholds(top=3))
    assert snap.statements.available is True
    assert snap.statements.reason is None
    [slow] = [row for row in snap.statements.by_mean if "outlier" in row.query]
    assert slow.query == "SELECT pg_sleep($1) AS outlier"
    assert slow.calls == 6
    assert slow.mean_ms >= 10
    assert snap.statements.by_mean[0] == slow  # the slowest statement run at least 5 times
    assert all(row.calls >= 5 for row in snap.statements.by_mean)
    assert len(snap.statements.by_total) == 3
    assert {row.database for row in snap.statements.by_total} == {empty_db.dbname}


def test_json_document_keys(db: ConnInfo) -> None:
    document = snapshot(db).to_json()
    assert list(document) == SNAPSHOT_KEYS
    assert document["server"]["database"] == db.dbname
    assert document["server"]["schema"] == "public"
    assert document["locks"] == {"waiting": 0, "roots": [], "cycles": []}
    assert set(document["connections"]) >= {"max_connections", "by_state", "by_application"}
