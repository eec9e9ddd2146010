"""The foundation and discovery on the Debian PostgreSQL 15 server too (when its binaries
are installed; .ci/run installs them, so CI always runs these)."""

from __future__ import annotations

from pathlib import Path

import pytest
from psycopg import sql

from pgrunbook.connect import connect
from pgrunbook.discover import discover
from pgrunbook.dsn import ConnInfo
from pgrunbook.reference import Naming
from pgrunbook.seed import seed, verify_counts
from tests import pg15_servers
from tests.support import TEST_ANCHOR, scalar
from tests.test_discover_reference import assert_reference_findings
from tests.test_seed import TINY_DEFECTS

# the servers' fixtures (shared with test_schedule.py)
pg15 = pg15_servers.pg15
pg15_cron = pg15_servers.pg15_cron


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
