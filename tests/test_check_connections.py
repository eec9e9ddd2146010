"""connections: client connections in use against max_connections minus the reserved slots."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import psycopg
import pytest

from pgrunbook.config import Config
from pgrunbook.discover import discover
from pgrunbook.dsn import ConnInfo
from pgrunbook.findings import Severity
from tests.support import scalar

CHECK = "connections"
EXTRA = 4
CLIENTS_SQL = "SELECT count(*)::int FROM pg_stat_activity WHERE backend_type = 'client backend'"
AVAILABLE_SQL = """
SELECT current_setting('max_connections')::int
     - current_setting('superuser_reserved_connections')::int
     - coalesce(current_setting('reserved_connections', true), '0')::int
"""


@pytest.fixture
def held(empty_db: ConnInfo) -> Iterator[list[psycopg.Connection[Any]]]:
    """EXTRA idle connections, held open for the test."""
    with ExitStack() as stack:
        yield [
            stack.enter_context(psycopg.connect(empty_db.conninfo(), autocommit=True))
            for _ in range(EXTRA)
        ]


def _settled_count(conn: psycopg.Connection[Any]) -> int:
    """Client backends now, once sessions the fixtures just closed have gone."""
    last = -1
    for _ in range(30):
        row = conn.execute(CLIENTS_SQL).fetchone()
        assert row is not None
        if row[0] == last:
            return int(row[0])
        last = row[0]
        time.sleep(0.1)
    return last


def _run(info: ConnInfo, **limits: Any) -> Any:
    return discover(info, only=(CHECK,), config=Config(checks={CHECK: limits}))


def test_held_connections_cross_the_threshold(
    empty_db: ConnInfo, held: list[psycopg.Connection[Any]]
) -> None:
    available = scalar(empty_db, AVAILABLE_SQL)
    assert isinstance(available, int)
    # the held ones (one of them counts), whatever else is open, and discovery's own
    expected = _settled_count(held[0]) + 1
    assert expected >= EXTRA + 1

    report = _run(empty_db, warning_ratio=expected / available, critical_ratio=1.0)
    (finding,) = report.by_check(CHECK)
    assert finding.severity is Severity.WARNING
    assert finding.object == f"database {empty_db.dbname}"
    assert finding.details["connections"] == expected
    assert finding.details["available"] == available
    assert finding.details["ratio"] == expected / available
    assert finding.details["by_state"]["idle"] >= EXTRA
    assert finding.details["by_state"]["active"] >= 1  # discovery itself
    assert f"{expected:,} of {available:,} connections in use" in finding.message
    assert finding.fix == "pgrunbook doctor connections --terminate-idle 10"

    # one more connection than are open would be needed: nothing
    assert _settled_count(held[0]) + 1 == expected  # the last discovery's session is gone
    assert _run(empty_db, warning_ratio=(expected + 1) / available).by_check(CHECK) == []
    # the critical threshold
    ratio = expected / available
    assert _settled_count(held[0]) + 1 == expected
    (critical,) = _run(empty_db, warning_ratio=ratio, critical_ratio=ratio).by_check(CHECK)
    assert critical.severity is Severity.CRITICAL


def test_defaults_do_not_fire(empty_db: ConnInfo) -> None:
    report = discover(empty_db, only=(CHECK,))
    assert report.by_check(CHECK) == []
    facts = report.facts[CHECK]
    assert facts["connections"] >= 1
    assert facts["available"] == scalar(empty_db, AVAILABLE_SQL)
    assert str(facts["max_connections"]) == scalar(empty_db, "SHOW max_connections")
    assert facts["ratio"] == facts["connections"] / facts["available"] < 0.8
