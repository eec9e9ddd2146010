"""The change engine end to end on a real server, both namings: apply all five steps, apply
again (nothing), verify, roll everything back to a schema and data identical to before, the
states ``status`` reports on the way, and a run killed during an index build."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pgrunbook.change import engine
from pgrunbook.change.step import StepContext, StepOptions
from pgrunbook.change.steps import STEPS, select
from pgrunbook.change.steps.constraints.fix import fix_constraints
from pgrunbook.dsn import ConnInfo
from pgrunbook.profile import load_profile
from tests.support import (
    PgServer,
    SeededDb,
    drop_app_roles,
    execute,
    rows,
    scalar,
    schema_dump,
    url,
)
from tests.test_discover_reference import CONSTRAINT_OF

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def seeded(seeded_db: SeededDb, pg_server: PgServer) -> Iterator[SeededDb]:
    """``seeded_db``, then the app roles the test made dropped."""
    yield seeded_db
    drop_app_roles(pg_server, seeded_db.info)


@pytest.fixture
def prisma_db(db: ConnInfo, pg_server: PgServer) -> Iterator[ConnInfo]:
    yield db
    drop_app_roles(pg_server, db)


def checksums(info: ConnInfo) -> dict[str, tuple[int, str]]:
    """Every table's row count and a checksum of its content."""
    out = {}
    tables = rows(
        info,
        "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'public' AND relkind = 'r' ORDER BY 1",
    )
    for (table,) in tables:
        query = sql.SQL(
            "SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), ''))"
            " FROM {} AS t"
        ).format(sql.Identifier("public", str(table)))
        [(count, digest)] = rows(info, query)
        out[str(table)] = (int(str(count)), str(digest))
    return out


def context(info: ConnInfo, tmp_path: Path | None = None) -> AbstractContextManager[StepContext]:
    options = StepOptions(passwords_file=tmp_path / "roles.env" if tmp_path else None)
    return engine.open_context(info, load_profile(), options=options)


def violated(anomalies: dict[str, Any]) -> set[str]:
    """The runbook constraints the seed's injected defects break."""
    return {name for kind, name in CONSTRAINT_OF.items() if anomalies.get(kind)}


def test_apply_all_then_rollback_restores_schema_and_data(
    seeded: SeededDb, pg_server: PgServer, tmp_path: Path
) -> None:
    info, _, anomalies = seeded
    dump_before, sums_before = schema_dump(pg_server, info), checksums(info)
    with context(info, tmp_path) as ctx:
        report = engine.apply_steps(ctx, STEPS)
        refused = {r.object.rsplit(".", 1)[-1] for run in report.runs for r in run.plan.refused}
        assert refused == violated(anomalies)
        assert report.exit_code == 1 and report.changed > 30
        constraints = {
            str(r[0])
            for r in ctx.conn.execute(
                "SELECT conname FROM pg_constraint WHERE conname LIKE 'chk\\_%'"
            )
        }
        assert constraints.isdisjoint(violated(anomalies))
        assert len(constraints) == 12 - len(violated(anomalies))

        again = engine.apply_steps(ctx, STEPS)
        assert again.changed == 0
        assert all(not run.plan.operations for run in again.runs)

        checks = engine.verify_steps(ctx, STEPS)
        failed = {(c.step, c.name) for c in checks if not c.passed}
        assert failed and {step for step, _ in failed} == {"constraints"}

        states = {s.step: s.state for s in engine.status(ctx, STEPS)}
        assert states == {
            "indexes": "applied",
            "triggers": "applied",
            "audit": "applied",
            "roles": "applied",
            "constraints": "partial",
        }

        undo = engine.rollback_steps(ctx, STEPS)
        assert len(undo.results) == len(undo.operations) > 30
        assert engine.rollback_plan(ctx, STEPS) == []
    assert schema_dump(pg_server, info) == dump_before
    assert checksums(info) == sums_before
    assert rows(info, "SELECT rolname FROM pg_roles WHERE starts_with(rolname, 'app_')") == []


def test_fix_then_apply_passes_every_verification(seeded: SeededDb, tmp_path: Path) -> None:
    info, _, anomalies = seeded
    with context(info, tmp_path) as ctx:
        engine.apply_steps(ctx, select(["audit"]))
        fixes = fix_constraints(ctx, (), dry_run=False)
        assert {f.constraint for f in fixes if f.rows_changed} == violated(anomalies)
        report = engine.apply_steps(ctx, STEPS)
        assert report.exit_code == 0 and report.refused == 0
        checks = engine.verify_steps(ctx, STEPS)
        assert [c.to_json() for c in checks if not c.passed] == []
        names = {c.name for c in checks}
        assert any("idx_message_room_created_desc" in n for n in names)
        assert {s.state for s in engine.status(ctx, STEPS)} == {"applied"}


def test_status_reports_pending_applied_and_drifted(prisma_db: ConnInfo) -> None:
    indexes = select(["indexes"])
    with context(prisma_db) as ctx:
        assert {s.state for s in engine.status(ctx, STEPS)} == {"pending"}
        engine.apply_steps(ctx, indexes)
        [state] = engine.status(ctx, indexes)
        assert state.state == "applied" and state.drifted == []

        execute(prisma_db, "DROP INDEX idx_report_pending")
        [state] = engine.status(ctx, indexes)
        assert state.state == "drifted"
        assert state.drifted == [
            "index idx_report_pending (index public.idx_report_pending): dropped outside pgrunbook"
        ]
        assert state.pending == ["index public.idx_report_pending"]

        engine.apply_steps(ctx, indexes)
        [state] = engine.status(ctx, indexes)
        assert state.state == "applied"


def test_rollback_never_drops_what_existed_before(prisma_db: ConnInfo) -> None:
    execute(
        prisma_db,
        'CREATE INDEX idx_report_pending ON "Report" ("createdAt") WHERE status = \'PENDING\'',
    )
    with context(prisma_db) as ctx:
        engine.apply_steps(ctx, select(["indexes"]))
        ops = engine.rollback_plan(ctx, select(["indexes"]))
        assert "index public.idx_report_pending" not in {op.object for op in ops}
        engine.rollback_steps(ctx, select(["indexes"]))
    assert rows(
        prisma_db, "SELECT indexname FROM pg_indexes WHERE starts_with(indexname, 'idx_')"
    ) == [("idx_report_pending",)]


def _pgrunbook(*args: str, info: ConnInfo) -> subprocess.Popen[str]:
    env = {**os.environ, "DATABASE_URL": "", "DIRECT_URL": ""}
    return subprocess.Popen(
        [sys.executable, "-m", "pgrunbook", *args, "--dsn", url(info)],
        env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip


def test_killed_index_build_is_completed_by_the_next_apply(prisma_db: ConnInfo) -> None:
    """SIGKILL pgrunbook while CREATE INDEX CONCURRENTLY waits for an old transaction; the
    server-side build dies with its connection and leaves an INVALID index behind."""
    holder = psycopg.connect(prisma_db.conninfo())
    holder.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    holder.execute('SELECT count(*) FROM "Gift"')  # a snapshot the build must wait for
    proc = _pgrunbook("apply", "indexes", "--yes", info=prisma_db)
    try:
        deadline = time.monotonic() + 30
        pid = None
        while pid is None and time.monotonic() < deadline:
            pid = scalar(
                prisma_db,
                "SELECT max(pid) FROM pg_stat_progress_create_index"
                " WHERE datname = current_database() AND starts_with(phase, 'waiting')",
            )
            time.sleep(0.1)
        assert pid is not None, "no index build started"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        # the client is gone; the server notices when the build's wait ends
        execute(prisma_db, f"SELECT pg_terminate_backend({int(str(pid))})")
    finally:
        holder.close()
    time.sleep(0.5)
    invalid = rows(
        prisma_db,
        "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " WHERE NOT i.indisvalid",
    )
    assert len(invalid) == 1
    with context(prisma_db) as ctx:
        [state] = engine.status(ctx, select(["indexes"]))
        assert state.state == "partial"
        assert state.interrupted == [f"index public.{invalid[0][0]}"]
        engine.apply_steps(ctx, select(["indexes"]))
        [state] = engine.status(ctx, select(["indexes"]))
        assert state.state == "applied" and state.interrupted == []
    assert rows(prisma_db, "SELECT 1 FROM pg_index WHERE NOT indisvalid") == []
