"""The foundation and discovery on the Debian PostgreSQL 15 server too (when its binaries
are installed; .ci/run installs them, so CI always runs these)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from psycopg import sql

from pgrunbook.connect import connect
from pgrunbook.discover import discover
from pgrunbook.dsn import ConnInfo
from pgrunbook.embedded import Binaries, LocalServer
from pgrunbook.reference import Naming
from pgrunbook.seed import seed, verify_counts
from tests.support import TEST_ANCHOR, scalar
from tests.test_discover_reference import assert_reference_findings
from tests.test_seed import TINY_DEFECTS

PG15 = Path("/usr/lib/postgresql/15/bin/postgres")


@pytest.fixture(scope="module")
def pg15(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConnInfo]:
    if not PG15.exists():
        if os.environ.get("CI"):
            pytest.fail("CI must install postgresql-15 (see .ci/run)")
        pytest.skip("PostgreSQL 15 server binaries not installed (apt-get install postgresql-15)")
    server = LocalServer(tmp_path_factory.mktemp("pg15") / "data", Binaries.system(15))
    yield server.start()
    server.stop()


@pytest.mark.parametrize("naming", list(Naming))
def test_seed_on_postgres_15(pg15: ConnInfo, naming: Naming) -> None:
    name = f"compat_{naming.value}"
    with connect(pg15, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    target = pg15.with_params(dbname=name)
    report = seed(target, scale="tiny", naming=naming, anchor=TEST_ANCHOR)
    assert str(scalar(target, "SHOW server_version")).startswith("15.")
    counted = verify_counts(target, naming)
    for kind, expected in TINY_DEFECTS.items():
        assert counted[kind] == report.anomalies[kind] == expected, kind
    assert_reference_findings(discover(target), report, naming)


def test_change_engine_on_postgres_15(pg15: ConnInfo, tmp_path: Path) -> None:
    """Apply (after fixing the data), verify, roll back: every step on PostgreSQL 15."""
    from pgrunbook.change import engine
    from pgrunbook.change.step import StepOptions
    from pgrunbook.change.steps import STEPS, select
    from pgrunbook.change.steps.constraints.fix import fix_constraints
    from pgrunbook.profile import load_profile

    name = "compat_change"
    with connect(pg15, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    target = pg15.with_params(dbname=name)
    seed(target, scale="tiny", anchor=TEST_ANCHOR)
    options = StepOptions(passwords_file=tmp_path / "roles.env")
    with engine.open_context(target, load_profile(), options=options) as ctx:
        try:
            engine.apply_steps(ctx, select(["audit"]))
            fix_constraints(ctx, (), dry_run=False)
            report = engine.apply_steps(ctx, STEPS)
            assert report.refused == 0
            failed = [c.to_json() for c in engine.verify_steps(ctx, STEPS) if not c.passed]
            assert failed == []
            assert {s.state for s in engine.status(ctx, STEPS)} == {"applied"}
        finally:
            engine.rollback_steps(ctx, STEPS)
        assert {s.state for s in engine.status(ctx, STEPS)} == {"pending"}
    assert scalar(target, "SELECT count(*) FROM pg_roles WHERE starts_with(rolname, 'app_')") == 0


PG_CRON = Path("/usr/lib/postgresql/15/lib/pg_cron.so")


@pytest.fixture(scope="module")
def pg15_cron(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConnInfo]:
    """A PostgreSQL 15 server with pg_cron loaded (the schedule's jobs run there)."""
    if not (PG15.exists() and PG_CRON.exists()):
        if os.environ.get("CI"):
            pytest.fail("CI must install postgresql-15 and postgresql-15-cron (see .ci/run)")
        pytest.skip("pg_cron for PostgreSQL 15 not installed (apt-get install postgresql-15-cron)")
    settings = {"shared_preload_libraries": "'pg_cron'", "cron.database_name": "'postgres'"}
    server = LocalServer(
        tmp_path_factory.mktemp("pg15cron") / "data", Binaries.system(15), settings=settings
    )
    yield server.start()
    server.stop()


def test_pg_cron_loads_and_schedules_on_postgres_15(pg15_cron: ConnInfo) -> None:
    with connect(pg15_cron, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_cron")
        row = conn.execute(
            "SELECT cron.schedule('pgrunbook-test', '0 3 * * *', 'SELECT 1')"
        ).fetchone()
        assert row is not None
        job = conn.execute(
            "SELECT schedule, command FROM cron.job WHERE jobname = 'pgrunbook-test'"
        ).fetchone()
        assert job == ("0 3 * * *", "SELECT 1")
        conn.execute("SELECT cron.unschedule('pgrunbook-test')")
        assert conn.execute("SELECT count(*) FROM cron.job").fetchone() == (0,)
