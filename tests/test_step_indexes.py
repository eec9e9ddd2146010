"""Step `indexes` (runbook script 02) on a real server, in both namings: the plan for the
seeded database, the round trip (apply, plan again, verify, roll back), INVALID indexes
rebuilt, builds in progress left alone and their progress read, missing tables and
columns skipped, long transactions reported, equivalent indexes, the exported scripts."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from pgrunbook.change import Journal, apply_operations
from pgrunbook.change.lockmodes import LockMode
from pgrunbook.change.refs import ObjectRef, RefKind
from pgrunbook.change.step import Skip, StepContext, StepOptions, StepPlan
from pgrunbook.change.steps import indexes
from pgrunbook.change.steps.indexes import BuildProgress, build_progress
from pgrunbook.dsn import ConnInfo
from pgrunbook.profile import load_profile
from pgrunbook.profile.load import parse_profile
from pgrunbook.reference import Naming
from pgrunbook.serverinfo import probe
from tests.support import RUNBOOK_INDEXES, SeededDb, execute, rows, run_psql

NAMINGS = [("db", Naming.PRISMA), ("snake_db", Naming.SNAKE)]

ROOM_HISTORY_CHECK = "room history uses idx_message_room_created_desc"
FOLLOWER = "idx_follow_follower_created"

ALL_INDEXES_SQL = """
SELECT c.relname::text, pg_get_indexdef(i.indexrelid), i.indisvalid
  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'public' ORDER BY 1
"""


@contextmanager
def step_context(info: ConnInfo, options: StepOptions | None = None) -> Iterator[StepContext]:
    with psycopg.connect(info.conninfo(), autocommit=True) as conn:
        yield StepContext(conn, "public", probe(conn), load_profile(), options or StepOptions())


def all_indexes(info: ConnInfo) -> list[tuple[object, ...]]:
    return rows(info, ALL_INDEXES_SQL)


def ours(info: ConnInfo) -> list[tuple[object, ...]]:
    """The runbook's indexes that exist: (name, valid)."""
    return [(r[0], r[2]) for r in all_indexes(info) if str(r[0]).startswith("idx_")]


def ident(*names: str) -> str:
    return sql.Identifier(*names).as_string()


def apply(ctx: StepContext, plan: StepPlan) -> None:
    journal = Journal(ctx.conn)
    journal.ensure()
    apply_operations(ctx.conn, plan.operations, journal)
    ctx.refresh()


def rollback(ctx: StepContext, plan: StepPlan) -> None:
    journal = Journal(ctx.conn)
    apply_operations(ctx.conn, list(reversed(plan.operations)), journal, action="rollback")
    ctx.refresh()


def analyze(ctx: StepContext) -> None:
    ctx.conn.execute("ANALYZE")
    ctx.refresh()


def leave_invalid_sender_index(info: ConnInfo, naming: Naming) -> None:
    """An INVALID ``idx_message_sender_created_desc``: a failed unique build of that name
    (users send many messages)."""
    with (
        psycopg.connect(info.conninfo(), autocommit=True) as conn,
        pytest.raises(psycopg.errors.UniqueViolation),
    ):
        conn.execute(
            sql.SQL("CREATE UNIQUE INDEX CONCURRENTLY {} ON {} ({})").format(
                sql.Identifier("idx_message_sender_created_desc"),
                sql.Identifier(naming.table("Message")),
                sql.Identifier(naming.column("senderId")),
            )
        )


def test_plan_builds_the_fifteen_on_the_seeded_database(seeded_db: SeededDb) -> None:
    info, naming, _ = seeded_db
    before = all_indexes(info)
    profile = load_profile()
    with step_context(info) as ctx:
        plan = indexes.plan(ctx)
    assert [op.object for op in plan.operations] == [f"index public.{n}" for n in RUNBOOK_INDEXES]
    assert (plan.present, plan.skipped, plan.refused, plan.warnings) == ([], [], [], [])
    for op, spec in zip(plan.operations, profile.indexes, strict=True):
        drop = f'DROP INDEX CONCURRENTLY IF EXISTS "public"."{spec.name}"'
        assert op.sql.startswith(f'CREATE INDEX CONCURRENTLY IF NOT EXISTS "{spec.name}" ON ')
        assert (op.reverse_sql, op.cleanup_sql, op.transactional, op.lock_mode) == (
            drop,
            drop,
            False,
            LockMode.SHARE_UPDATE_EXCLUSIVE,
        )
        assert op.table == ("public", naming.table(spec.table))
        assert op.ref == ObjectRef(RefKind.INDEX, spec.name, "public") and op.creates
        assert op.why == spec.serves and op.reverse().transactional is False
    by_name = {op.object.removeprefix("index public."): op.sql for op in plan.operations}
    message, c = ident("public", naming.table("Message")), naming.column
    assert by_name["idx_message_room_active"] == (
        'CREATE INDEX CONCURRENTLY IF NOT EXISTS "idx_message_room_active" ON '
        f"{message} ({ident(c('roomId'))}, {ident(c('createdAt'))} DESC) "
        f"WHERE {ident(c('isDeleted'))} = false"
    )
    room = ident("public", naming.table("Room"))
    assert by_name["idx_room_public_active"] == (
        'CREATE INDEX CONCURRENTLY IF NOT EXISTS "idx_room_public_active" ON '
        f"{room} ({ident(c('currentMembers'))} DESC, {ident(c('createdAt'))} DESC) "
        f"WHERE {ident(c('isPublic'))} = true AND {ident(c('isActive'))} = true"
    )
    assert all_indexes(info) == before  # planning changed nothing


def test_apply_plan_again_verify_rollback(seeded_db: SeededDb) -> None:
    info, naming, _ = seeded_db
    before = all_indexes(info)
    with step_context(info) as ctx:
        analyze(ctx)
        checks = indexes.verify(ctx)
        assert [c.name for c in checks] == [
            f"index {n} exists and is valid" for n in RUNBOOK_INDEXES
        ] + [ROOM_HISTORY_CHECK]
        assert [c.passed for c in checks] == [False] * 16
        assert "idx_message_room_created_desc" not in checks[-1].details["uses"]

        plan = indexes.plan(ctx)
        apply(ctx, plan)
        assert ours(info) == sorted((n, True) for n in RUNBOOK_INDEXES)

        again = indexes.plan(ctx)
        assert again.operations == [] and again.warnings == []
        assert again.present == [f"index public.{n}" for n in RUNBOOK_INDEXES]

        analyze(ctx)
        checks = indexes.verify(ctx)
        assert [c.passed for c in checks] == [True] * 16
        first = checks[0].details
        assert first["table"] == f"public.{naming.table('Message')}" and first["as_profile"]
        assert str(first["definition"]).startswith(
            "CREATE INDEX idx_message_room_created_desc ON public."
        )
        assert int(first["bytes"]) > 0
        assert checks[-1].details["uses"] == ["idx_message_room_created_desc"]

        rollback(ctx, plan)
    assert all_indexes(info) == before


def test_an_invalid_index_is_dropped_and_rebuilt(db: ConnInfo) -> None:
    before = all_indexes(db)
    leave_invalid_sender_index(db, Naming.PRISMA)
    assert ("idx_message_sender_created_desc", False) in ours(db)
    with step_context(db) as ctx:
        plan = indexes.plan(ctx)
        assert [op.object for op in plan.operations[:4]] == [
            "index public.idx_message_room_created_desc",
            "invalid index public.idx_message_sender_created_desc",
            "index public.idx_message_sender_created_desc",
            "index public.idx_message_room_active",
        ]
        drop = plan.operations[1]
        assert drop.sql == (
            'DROP INDEX CONCURRENTLY IF EXISTS "public"."idx_message_sender_created_desc"'
        )
        assert (drop.reverse_sql, drop.transactional, drop.creates) == (None, False, False)
        assert "INVALID index" in drop.why and "serves no query" in drop.why
        assert drop.why.endswith(
            'CREATE UNIQUE INDEX idx_message_sender_created_desc ON public."Message" '
            'USING btree ("senderId"))'
        )
        assert len(plan.operations) == 16 and plan.present == [] and plan.skipped == []

        apply(ctx, plan)
        rebuilt = {r[0]: (r[1], r[2]) for r in all_indexes(db)}["idx_message_sender_created_desc"]
        assert rebuilt == (
            'CREATE INDEX idx_message_sender_created_desc ON public."Message" '
            'USING btree ("senderId", "createdAt" DESC)',
            True,
        )
        assert indexes.plan(ctx).operations == []

        rollback(ctx, plan)
    assert all_indexes(db) == before  # the invalid one is not brought back


def test_a_build_in_progress_is_left_alone_and_its_progress_read(db: ConnInfo) -> None:
    with (
        psycopg.connect(db.conninfo(), autocommit=True) as blocker,
        psycopg.connect(db.conninfo(), autocommit=True) as builder,
        psycopg.connect(db.conninfo(), autocommit=True) as watcher,
    ):
        # an old snapshot: the build waits for it before it marks the index valid
        blocker.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        blocker.execute('SELECT count(*) FROM "Wallet"')
        pid = builder.info.backend_pid
        failure: list[BaseException] = []

        def build() -> None:
            try:
                builder.execute(
                    'CREATE INDEX CONCURRENTLY idx_report_pending ON "Report" ("createdAt") '
                    "WHERE status = 'PENDING'"
                )
            except psycopg.Error as exc:
                failure.append(exc)

        thread = threading.Thread(target=build)
        thread.start()
        try:
            deadline = time.monotonic() + 10
            progress = build_progress(watcher, pid)
            # the build may also wait, briefly, for a snapshot someone else (this watcher's
            # own query, an autoanalyze) held when it looked: wait until it waits for ours
            while (
                progress is None
                or progress.phase != "waiting for old snapshots"
                or progress.current_locker_pid != blocker.info.backend_pid
            ):
                assert time.monotonic() < deadline, progress
                time.sleep(0.02)
                progress = build_progress(watcher, pid)
            assert (progress.pid, progress.command, progress.index_name, progress.table_name) == (
                pid,
                "CREATE INDEX CONCURRENTLY",
                "idx_report_pending",
                '"Report"',
            )
            total, done = progress.lockers_total, progress.lockers_done
            assert total is not None and done is not None and 0 <= done < total <= 3
            assert progress.fraction == done / total
            assert progress.describe() == (
                f"waiting for old snapshots {done / total:.0%} ({done} of {total} transactions), "
                f"waiting for pid {blocker.info.backend_pid}"
            )

            with step_context(db) as ctx:
                plan = indexes.plan(ctx)
            assert plan.skipped == [
                Skip(
                    "index public.idx_report_pending",
                    f"being built by pid {pid} (waiting for old snapshots); re-run when it ends",
                )
            ]
            assert "index public.idx_report_pending" not in [o.object for o in plan.operations]
            assert not any("invalid index" in o.object for o in plan.operations)
        finally:
            blocker.execute("COMMIT")
            thread.join(timeout=10)
        assert failure == []
        assert build_progress(watcher, pid) is None
    with step_context(db) as ctx:
        assert "index public.idx_report_pending" in indexes.plan(ctx).present


def test_progress_fraction_and_description_follow_the_phase() -> None:
    def at(
        phase: str, blocks: tuple[int, int] = (0, 0), tuples: tuple[int, int] = (0, 0)
    ) -> BuildProgress:
        return BuildProgress(
            1, "CREATE INDEX CONCURRENTLY", phase, "idx_x", "t", blocks[1], blocks[0],
            tuples[1], tuples[0], 0, 0, None,
        )  # fmt: skip

    scanning = at("building index: scanning table", blocks=(1234, 2940), tuples=(5, 10))
    assert scanning.fraction == pytest.approx(1234 / 2940)
    assert scanning.describe() == "building index: scanning table 42% (1,234 of 2,940 blocks)"
    loading = at("building index: loading tuples in tree", blocks=(2940, 2940), tuples=(50, 200))
    assert loading.fraction == 0.25
    assert loading.describe() == "building index: loading tuples in tree 25% (50 of 200 tuples)"
    assert at("initializing").fraction is None
    assert at("initializing").describe() == "initializing"


def test_a_missing_table_or_column_is_skipped_with_the_reason(seeded_db: SeededDb) -> None:
    info, naming, _ = seeded_db
    tokens = naming.table("RefreshToken")
    execute(
        info,
        sql.SQL("DROP TABLE {} CASCADE; ALTER TABLE {} DROP COLUMN {}")
        .format(
            sql.Identifier(naming.table("Report")),
            sql.Identifier(tokens),
            sql.Identifier(naming.column("revokedAt")),
        )
        .as_string(),
    )
    expected_skips = [
        Skip("index public.idx_report_pending", "table 'Report' not found in schema 'public'"),
        Skip(
            "index public.idx_refreshtoken_expires_active",
            f"no predicate fits: column 'revokedAt' not found in public.{tokens}",
        ),
    ]
    gone = ("idx_report_pending", "idx_refreshtoken_expires_active")
    built = [n for n in RUNBOOK_INDEXES if n not in gone]
    with step_context(info) as ctx:
        plan = indexes.plan(ctx)
        assert plan.skipped == expected_skips
        assert [op.object for op in plan.operations] == [f"index public.{n}" for n in built]
        forward = indexes.export(ctx).forward
        assert "-- index public.idx_report_pending: skipped: table 'Report' not found" in forward

        apply(ctx, plan)
        analyze(ctx)
        checks = indexes.verify(ctx)
    assert [c.name for c in checks] == [f"index {n} exists and is valid" for n in built] + [
        ROOM_HISTORY_CHECK
    ]
    assert all(c.passed for c in checks)
    assert ours(info) == sorted((n, True) for n in built)


def test_long_transactions_are_reported_before_building(db: ConnInfo) -> None:
    with (
        psycopg.connect(db.conninfo(), autocommit=True) as old,
        psycopg.connect(db.conninfo(), autocommit=True) as writer,
        psycopg.connect(db.conninfo(), autocommit=True) as reader,
    ):
        # a snapshot older than the build's
        old.execute("SET application_name = 'app-long'")
        old.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        old.execute('SELECT count(*) FROM "Wallet"')
        # a writer of Message (ROW EXCLUSIVE held to the end of its transaction)
        writer.execute("BEGIN")
        writer.execute('UPDATE "Message" SET content = content WHERE false')
        # a read-committed reader between statements: no snapshot, no conflicting lock
        reader.execute("BEGIN")
        reader.execute('SELECT count(*) FROM "Message"')
        time.sleep(0.3)
        with step_context(db, StepOptions(long_transaction_seconds=0.2)) as ctx:
            plan = indexes.plan(ctx)
            [first, second] = plan.warnings
            assert first.startswith(f"pid {old.info.backend_pid} (")
            assert first.endswith(
                ", app-long, idle in transaction) has had a transaction open for 0 s "
                "(query: 'SELECT count(*) FROM \"Wallet\"'): "
                "CREATE INDEX CONCURRENTLY waits for it to end"
            )
            assert second.startswith(f"pid {writer.info.backend_pid} (")
            assert "(query: 'UPDATE \"Message\" SET content = content WHERE false')" in second
            # nothing to build: nothing to wait for, no warning
            present_only = parse_profile(
                '[[indexes]]\nname = "Message_roomId_idx"\ntable = "Message"\n'
                'columns = ["roomId"]\n',
                "test",
            )
            ctx.profile = present_only
            quiet = indexes.plan(ctx)
            assert (quiet.operations, quiet.present, quiet.warnings) == (
                [],
                ["index public.Message_roomId_idx"],
                [],
            )
        for conn in (old, writer, reader):
            conn.execute("COMMIT")


def test_an_equivalent_index_under_another_name_serves_instead(db: ConnInfo) -> None:
    execute(
        db,
        'CREATE INDEX gifts_by_room ON "GiftSend" ("roomId", "createdAt" DESC);'
        'CREATE INDEX pending_reports ON "Report" ("createdAt") WHERE status = \'PENDING\';'
        'CREATE INDEX history ON "Message" ("roomId", "createdAt" DESC);'
        # not equivalent: ascending; our name on a different index
        'CREATE INDEX received_asc ON "GiftSend" ("receiverId", "createdAt");'
        'CREATE INDEX idx_follow_follower_created ON "Follow" ("followerId");',
    )
    with step_context(db) as ctx:
        plan = indexes.plan(ctx)
        assert plan.skipped == [
            Skip(
                "index public.idx_giftsend_room_created_desc",
                "equivalent index gifts_by_room already serves this (CREATE INDEX gifts_by_room "
                'ON public."GiftSend" USING btree ("roomId", "createdAt" DESC))',
            ),
            Skip(
                "index public.idx_report_pending",
                "equivalent index pending_reports already serves this (CREATE INDEX "
                'pending_reports ON public."Report" USING btree ("createdAt") '
                "WHERE (status = 'PENDING'::\"ReportStatus\"))",
            ),
        ]
        assert plan.present == ["index public.idx_follow_follower_created"]
        not_built = ("idx_giftsend_room_created_desc", "idx_report_pending", FOLLOWER)
        built = [n for n in RUNBOOK_INDEXES if n not in not_built]
        assert [op.object for op in plan.operations] == [f"index public.{n}" for n in built]
        assert plan.warnings == [
            "index public.history is equivalent to idx_message_room_created_desc (CREATE INDEX "
            'history ON public."Message" USING btree ("roomId", "createdAt" DESC)); '
            "idx_message_room_created_desc is built anyway because the runbook's check expects "
            "the room-history query to use it; history is then a duplicate you may drop "
            "(pgrunbook does not touch it)",
            "index public.idx_follow_follower_created exists but is not the index the profile "
            'describes; it is: CREATE INDEX idx_follow_follower_created ON public."Follow" '
            'USING btree ("followerId"); pgrunbook would build: CREATE INDEX CONCURRENTLY IF NOT '
            'EXISTS "idx_follow_follower_created" ON "public"."Follow" ("followerId", '
            '"createdAt" DESC); pgrunbook leaves it as it is (drop it yourself to have it '
            "rebuilt)",
        ]
        assert "-- index public.idx_report_pending: skipped: equivalent index pending_reports" in (
            indexes.export(ctx).forward
        )

        apply(ctx, plan)
        analyze(ctx)
        checks = {c.name: c for c in indexes.verify(ctx)}
        assert all(c.passed for c in checks.values())
        gifts = checks["index idx_giftsend_room_created_desc exists and is valid"].details
        assert gifts["served_by"] == "gifts_by_room"
        follower = checks["index idx_follow_follower_created exists and is valid"].details
        assert follower["as_profile"] is False
        assert checks[ROOM_HISTORY_CHECK].details["uses"] == ["idx_message_room_created_desc"]

        rollback(ctx, plan)
    names = [r[0] for r in all_indexes(db)]
    for kept in ("gifts_by_room", "pending_reports", "history", "received_asc", FOLLOWER):
        assert kept in names
    assert [n for n in names if str(n).startswith("idx_")] == [FOLLOWER]


def test_exported_scripts_run_with_psql(seeded_db: SeededDb, tmp_path: Path) -> None:
    info, naming, _ = seeded_db
    before = all_indexes(info)
    leave_invalid_sender_index(info, naming)
    with step_context(info) as ctx:
        script = indexes.export(ctx)
    code = "\n".join(x for x in script.forward.splitlines() if not x.startswith("--"))
    assert "BEGIN" not in code.upper() and "COMMIT" not in code.upper()
    assert "SET lock_timeout = '3600000ms';\nSET statement_timeout = 0;" in script.forward
    assert 'psql -X -v ON_ERROR_STOP=1 -f 02_performance_indexes.sql "$DIRECT_URL"' in (
        script.forward
    )
    forward, back = tmp_path / "02_performance_indexes.sql", tmp_path / "rollback.sql"
    forward.write_text(script.forward)
    back.write_text(script.rollback)

    for _ in range(2):
        done = run_psql(info, forward)
        assert done.returncode == 0 and "ERROR" not in done.stderr, done.stderr
        assert ours(info) == sorted((n, True) for n in RUNBOOK_INDEXES)
    sender = {r[0]: r[1] for r in all_indexes(info)}["idx_message_sender_created_desc"]
    assert not str(sender).startswith("CREATE UNIQUE")  # the invalid one was rebuilt
    with step_context(info) as ctx:
        again = indexes.plan(ctx)
    assert again.operations == [] and len(again.present) == 15

    assert script.rollback.count("DROP INDEX CONCURRENTLY IF EXISTS") == 15
    done = run_psql(info, back)
    assert done.returncode == 0 and "ERROR" not in done.stderr, done.stderr
    assert all_indexes(info) == before
