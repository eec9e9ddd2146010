"""statements: slow and top statements from pg_stat_statements, and how to enable it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import psycopg
import pytest

from pgrunbook.config import Config
from pgrunbook.discover import discover
from pgrunbook.dsn import ConnInfo
from pgrunbook.findings import Severity
from pgrunbook.pgss import statements_available, top_statements
from pgrunbook.serverinfo import ServerInfo, probe
from tests.support import PgServer, execute, scalar

ONLY = ("statements",)
SLOW = "SELECT pg_sleep(%s)"
FAST = "SELECT count(*) FROM generate_series(1, %s)"


@pytest.fixture
def preloaded(pg_server: PgServer) -> None:
    if pg_server.local is None:
        pytest.skip("needs the test server's shared_preload_libraries = 'pg_stat_statements'")


def _run(info: ConnInfo, query: str, value: float, times: int) -> None:
    with psycopg.connect(info.conninfo(), autocommit=True) as conn:
        for _ in range(times):
            conn.execute(query, (value,))


def _queryid(info: ConnInfo, prefix: str) -> int:
    found = scalar(
        info,
        "SELECT queryid FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid "
        "WHERE d.datname = current_database() AND starts_with(s.query, %s)",
        (prefix,),
    )
    assert isinstance(found, int)
    return found


def test_slow_statement_is_a_warning_and_tops_the_lists(
    preloaded: None, make_db: Callable[..., ConnInfo]
) -> None:
    mine, other = make_db(), make_db()
    execute(mine, "CREATE EXTENSION pg_stat_statements")
    _run(mine, SLOW, 0.35, 2)
    _run(mine, FAST, 100, 30)
    # the same statement in another database: pg_stat_statements is server-wide
    _run(other, SLOW, 0.35, 2)
    config = Config(checks={"statements": {"slow_mean_ms": 300.0, "slow_min_calls": 2, "top": 50}})

    report = discover(mine, only=ONLY, config=config)

    findings = {f.object: f for f in report.by_check("statements")}
    slow = findings[f"query {_queryid(mine, 'SELECT pg_sleep($1)')}"]
    assert slow.severity is Severity.WARNING
    assert slow.details["calls"] == 2  # not 4: the other database's calls are not counted
    assert 350 <= slow.details["mean_ms"] < 600
    assert slow.details["total_ms"] == pytest.approx(2 * slow.details["mean_ms"])
    assert slow.details["rank_by_total"] == 1
    assert slow.details["rank_by_mean"] == 1
    assert slow.details["rows"] == 2
    assert slow.details["query"] == "SELECT pg_sleep($1)"
    assert slow.details["database"] == mine.params["dbname"]
    assert slow.message.startswith(
        f"slow: mean {slow.details['mean_ms']:,.0f} ms over 2 calls, over the 300 ms threshold"
    )
    fast = findings[f"query {_queryid(mine, 'SELECT count(*) FROM generate_series')}"]
    assert fast.severity is Severity.INFO
    assert fast.details["calls"] == 30
    assert fast.details["rank_by_total"] is not None and fast.details["rank_by_total"] > 1
    assert [f.object for f in report.by_check("statements") if f.severity is not Severity.INFO] == [
        slow.object
    ]
    assert report.facts["statements"]["top_by_total"][0]["queryid"] == slow.details["queryid"]


def test_top_statements_library_filters_by_calls_and_mean(
    preloaded: None, empty_db: ConnInfo
) -> None:
    execute(empty_db, "CREATE EXTENSION pg_stat_statements")
    _run(empty_db, SLOW, 0.05, 1)
    _run(empty_db, FAST, 10, 5)
    with psycopg.connect(empty_db.conninfo(), autocommit=True) as conn:
        [by_mean] = top_statements(conn, "public", "mean", 1)
        assert by_mean.query == "SELECT pg_sleep($1)" and by_mean.calls == 1
        frequent = top_statements(conn, "public", "mean", 10, min_calls=5, query_chars=12)
        assert [(r.query, r.calls) for r in frequent] == [("SELECT count", 5)]
        assert frequent[0].hit_ratio is None  # generate_series reads no table blocks
        assert top_statements(conn, "public", "total", 10, min_mean_ms=10_000) == []
        with pytest.raises(ValueError):
            top_statements(conn, "public", "median", 1)  # type: ignore[arg-type]


def test_old_extension_version_is_read_with_its_own_columns(
    preloaded: None, empty_db: ConnInfo
) -> None:
    # 1.7 (PostgreSQL 12's) has total_time/mean_time and no toplevel; a server upgraded
    # with pg_upgrade keeps it until ALTER EXTENSION ... UPDATE.
    execute(empty_db, "CREATE EXTENSION pg_stat_statements VERSION '1.7'")
    _run(empty_db, SLOW, 0.15, 2)

    report = discover(empty_db, only=ONLY, config=Config(checks={"statements": {"top": 1}}))

    [top] = report.by_check("statements")
    assert top.details["query"] == "SELECT pg_sleep($1)"
    assert top.details["calls"] == 2
    assert report.facts["statements"]["stats_reset"] is None  # no pg_stat_statements_info


def test_nothing_slow_gives_no_warning(preloaded: None, empty_db: ConnInfo) -> None:
    execute(empty_db, "CREATE EXTENSION pg_stat_statements")
    _run(empty_db, FAST, 100, 20)

    report = discover(empty_db, only=ONLY, config=Config(checks={"statements": {"top": 100}}))

    findings = report.by_check("statements")
    assert findings and all(f.severity is Severity.INFO for f in findings)
    assert all(f.object.startswith("query ") for f in findings)
    fast = [f for f in findings if f.details["query"].startswith("SELECT count(*)")]
    assert [f.details["calls"] for f in fast] == [20]


def test_not_installed_says_how_to_enable_it(preloaded: None, empty_db: ConnInfo) -> None:
    report = discover(empty_db, only=ONLY)

    [finding] = report.by_check("statements")
    assert finding.severity is Severity.INFO
    assert finding.object == f"database {empty_db.params['dbname']}"
    assert finding.message == (
        "pg_stat_statements is not installed in this database (the server preloads it): "
        "run CREATE EXTENSION pg_stat_statements;"
    )
    assert finding.fix == "CREATE EXTENSION pg_stat_statements;"
    assert finding.details == {
        "available": True,
        "installed": False,
        "preloaded": True,
        "neon": False,
    }


def _with_extension(
    info: ServerInfo, *, available: bool = True, version: str | None, preloaded: bool | None
) -> ServerInfo:
    changed = [
        replace(e, available=available, installed_version=version, preloaded=preloaded)
        if e.name == "pg_stat_statements"
        else e
        for e in info.extensions
    ]
    return replace(info, extensions=tuple(changed))


def test_enable_hints_for_every_server_state(empty_db: ConnInfo) -> None:
    with psycopg.connect(empty_db.conninfo(), autocommit=True) as conn:
        info = probe(conn)
    missing = _with_extension(info, available=False, version=None, preloaded=None)
    assert statements_available(missing) == (
        f"pg_stat_statements is not available on this server: install the PostgreSQL "
        f"contrib package (e.g. postgresql-{info.major}-contrib or postgresql-contrib), add "
        f"pg_stat_statements to shared_preload_libraries, restart the server, then run "
        f"CREATE EXTENSION pg_stat_statements;"
    )
    not_loaded = _with_extension(info, version=None, preloaded=False)
    assert statements_available(not_loaded) == (
        "pg_stat_statements is not installed in this database and not in "
        "shared_preload_libraries: add it there, restart the server, then run "
        "CREATE EXTENSION pg_stat_statements;"
    )
    hidden = _with_extension(info, version=None, preloaded=None)
    assert "hidden from this role" in (statements_available(hidden) or "")
    neon = replace(hidden, neon=True)
    assert statements_available(neon) == (
        "pg_stat_statements is not installed in this database (Neon preloads it): "
        "run CREATE EXTENSION pg_stat_statements;"
    )
    installed_unloaded = _with_extension(info, version="1.11", preloaded=False)
    assert "collects nothing" in (statements_available(installed_unloaded) or "")
    ready = _with_extension(info, version="1.11", preloaded=True)
    assert statements_available(ready) is None
