"""The change engine's runner and journal on a real server: waiting instead of queueing,
giving up cleanly, failures journaled and cleaned up, one run at a time."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from pgrunbook.change import ApplyPolicy, Journal, Operation, RunLock, apply_operations
from pgrunbook.change.journal import RunBusyError
from pgrunbook.change.lockmodes import LockMode
from pgrunbook.change.runner import OperationFailed
from pgrunbook.dsn import ConnInfo
from pgrunbook.locking import LockBudgetExceeded
from tests.support import execute, rows, scalar

FAST = ApplyPolicy(lock_timeout_ms=100, budget_seconds=5, poll_seconds=0.05)

ADD_CHECK = Operation(
    step="constraints",
    object="constraint public.wallet.chk_balance",
    sql="ALTER TABLE public.wallet ADD CONSTRAINT chk_balance CHECK (balance >= 0) NOT VALID",
    reverse_sql="ALTER TABLE public.wallet DROP CONSTRAINT IF EXISTS chk_balance",
    transactional=True,
    lock_mode=LockMode.ACCESS_EXCLUSIVE,
    table=("public", "wallet"),
)


@pytest.fixture
def wallet(empty_db: ConnInfo) -> ConnInfo:
    execute(
        empty_db,
        "CREATE TABLE wallet (id int PRIMARY KEY, balance int NOT NULL);"
        "INSERT INTO wallet SELECT g, 10 FROM generate_series(1, 100) g;",
    )
    return empty_db


def session(info: ConnInfo) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(info.conninfo(), autocommit=True)


def constraints(info: ConnInfo) -> list[tuple[object, ...]]:
    return rows(
        info,
        "SELECT conname FROM pg_constraint WHERE conrelid = 'wallet'::regclass AND contype = 'c'",
    )


def test_apply_then_rollback_is_journaled(wallet: ConnInfo) -> None:
    with session(wallet) as conn:
        journal = Journal(conn)
        journal.ensure()
        [result] = apply_operations(conn, [ADD_CHECK], journal, policy=FAST)
        assert result.tries == 1 and result.blockers == []
        assert constraints(wallet) == [("chk_balance",)]
        [entry] = journal.latest()
        assert (entry.step, entry.object, entry.action, entry.outcome) == (
            "constraints",
            ADD_CHECK.object,
            "apply",
            "done",
        )
        assert entry.inverse_sql == ADD_CHECK.reverse_sql and entry.in_force

        apply_operations(conn, [ADD_CHECK], journal, action="rollback", policy=FAST)
        assert constraints(wallet) == []
        [entry] = journal.latest()
        assert (entry.action, entry.outcome, entry.forward_sql) == (
            "rollback",
            "done",
            ADD_CHECK.reverse_sql,
        )
        assert not entry.in_force
    assert scalar(wallet, "SELECT count(*) FROM pgrunbook.journal") == 2


def test_waits_for_a_conflicting_holder_instead_of_queueing(wallet: ConnInfo) -> None:
    """While a writer holds its lock, the runner only watches: it never enters the lock
    queue, so the app's other queries on the table are never stuck behind it."""
    holder = session(wallet)
    holder.execute("BEGIN")
    holder.execute("UPDATE wallet SET balance = balance WHERE id = 1")  # ROW EXCLUSIVE
    holder_pid = holder.info.backend_pid
    queued: list[int] = []
    events: list[str] = []
    release = threading.Timer(0.5, lambda: holder.execute("COMMIT"))

    def watch(event: str, op: Operation, text: str) -> None:
        if event == "waiting" and "waiting" not in events:
            release.start()  # the writer commits 0.5 s after the runner starts waiting
        events.append(event)
        if event == "waiting":
            queued.append(
                int(str(scalar(wallet, "SELECT count(*) FROM pg_locks WHERE NOT granted")))
            )

    try:
        with session(wallet) as conn:
            journal = Journal(conn)
            journal.ensure()
            [result] = apply_operations(conn, [ADD_CHECK], journal, policy=FAST, report=watch)
    finally:
        release.join()
        holder.close()
    assert "waiting" in events and events[-1] == "done"
    assert queued and set(queued) == {0}  # nobody, us included, was waiting in the queue
    assert result.waited_seconds >= 0.4
    assert result.blockers and result.blockers[0].startswith(f"pid {holder_pid} ")
    assert "RowExclusiveLock" in result.blockers[0]
    assert constraints(wallet) == [("chk_balance",)]


def test_gives_up_cleanly_when_the_holder_stays(wallet: ConnInfo) -> None:
    with session(wallet) as holder, session(wallet) as conn:
        holder.execute("BEGIN")
        holder.execute("SELECT * FROM wallet LIMIT 1")  # ACCESS SHARE: blocks ALTER TABLE
        journal = Journal(conn)
        journal.ensure()
        started = time.monotonic()
        policy = ApplyPolicy(budget_seconds=0.5, poll_seconds=0.05)
        with pytest.raises(LockBudgetExceeded) as caught:
            apply_operations(conn, [ADD_CHECK], journal, policy=policy)
        assert time.monotonic() - started < 2
        assert f"pid {holder.info.backend_pid} " in caught.value.one_line()
        assert "AccessShareLock" in caught.value.one_line()
        [entry] = journal.latest()
        assert entry.outcome == "failed" and "gave up on" in (entry.error or "")
        holder.execute("ROLLBACK")
    assert constraints(wallet) == []


def test_a_failed_concurrent_build_is_journaled_and_leaves_no_invalid_index(
    wallet: ConnInfo,
) -> None:
    execute(wallet, "UPDATE wallet SET balance = 1 WHERE id <= 2")
    build = Operation(
        step="indexes",
        object="index public.wallet_balance_key",
        sql="CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS wallet_balance_key "
        "ON public.wallet (balance)",
        reverse_sql="DROP INDEX CONCURRENTLY IF EXISTS public.wallet_balance_key",
        transactional=False,
        lock_mode=LockMode.SHARE_UPDATE_EXCLUSIVE,
        table=("public", "wallet"),
        cleanup_sql="DROP INDEX CONCURRENTLY IF EXISTS public.wallet_balance_key",
    )
    assert not build.blocks_app and ADD_CHECK.blocks_app
    with session(wallet) as conn:
        journal = Journal(conn)
        journal.ensure()
        failed = r"apply of index public\.wallet_balance_key failed: could not create unique"
        with pytest.raises(OperationFailed, match=failed):
            apply_operations(conn, [build], journal, policy=FAST)
        [entry] = journal.latest()
        assert entry.outcome == "failed"
    assert scalar(wallet, "SELECT to_regclass('wallet_balance_key') IS NULL") is True


def test_one_run_at_a_time(wallet: ConnInfo) -> None:
    busy = r"another pgrunbook run is changing this database \(pid \d+, user "
    with session(wallet) as first, session(wallet) as second:
        with RunLock(first), pytest.raises(RunBusyError, match=busy) as caught, RunLock(second):
            pass
        assert f"pid {first.info.backend_pid}," in caught.value.one_line()
        with RunLock(second):  # released by the first run
            pass


def test_operation_json_shape() -> None:
    document = ADD_CHECK.to_json()
    assert {"sql", "transactional", "lock", "reverse_sql"} <= set(document)
    assert document["lock"] == "ACCESS EXCLUSIVE on public.wallet"
    assert document["transactional"] is True
