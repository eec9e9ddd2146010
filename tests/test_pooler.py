"""A real PgBouncer in transaction mode: what works through it, what is routed around it,
and that pgrunbook leaves no session state on its pooled server connection."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pgrunbook.cli.main import run
from pgrunbook.dsn import ConnInfo
from tests.pgbouncer_server import pgbouncer
from tests.support import url

# What a session-level SET would leave on the one server connection the pool shares.
SETTINGS = (
    "SELECT current_setting('lock_timeout'), current_setting('statement_timeout'), "
    "current_setting('default_transaction_read_only')"
)


@pytest.fixture
def pooled(db: ConnInfo) -> Iterator[ConnInfo]:
    with pgbouncer(db) as info:
        yield info


def _settings(info: ConnInfo) -> tuple[object, ...]:
    with psycopg.connect(info.conninfo(), autocommit=True, prepare_threshold=None) as conn:
        row = conn.execute(SETTINGS).fetchone()
    assert row is not None
    return tuple(row)


def test_the_pool_shares_one_server_session(pooled: ConnInfo) -> None:
    with psycopg.connect(pooled.conninfo(), autocommit=True, prepare_threshold=None) as a:
        first = a.execute("SELECT pg_backend_pid()").fetchone()
    with psycopg.connect(pooled.conninfo(), autocommit=True, prepare_threshold=None) as b:
        assert b.execute("SELECT pg_backend_pid()").fetchone() == first


def test_discover_works_through_the_pooler_and_leaves_no_session_state(
    pooled: ConnInfo, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _settings(pooled)
    monkeypatch.setenv("DATABASE_URL", url(pooled))
    monkeypatch.delenv("DIRECT_URL", raising=False)
    assert run(["discover", "--check", "dead_tuples", "--json"]) in (0, 1)
    out, _ = capsys.readouterr()
    assert '"check": "dead_tuples"' in out or '"findings"' in out
    assert _settings(pooled) == before


def test_apply_through_the_pooler_alone_is_refused_in_one_line(
    pooled: ConnInfo, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", url(pooled))
    monkeypatch.delenv("DIRECT_URL", raising=False)
    assert run(["apply", "indexes", "--yes"]) == 2
    _, err = capsys.readouterr()
    assert "connection pooler" in err and "DIRECT_URL" in err
    assert len(err.strip().splitlines()) == 1


def test_apply_goes_to_the_direct_url_when_there_is_one(
    db: ConnInfo, pooled: ConnInfo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", url(pooled))
    monkeypatch.setenv("DIRECT_URL", url(db))
    before = _settings(pooled)
    assert run(["apply", "triggers", "--yes"]) == 0
    with psycopg.connect(db.conninfo(), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'trg_%_updated_at'"
        ).fetchone()
    assert row is not None and row[0] > 0
    assert _settings(pooled) == before


def test_monitor_works_through_the_pooler_and_leaves_no_session_state(
    pooled: ConnInfo, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _settings(pooled)
    monkeypatch.setenv("DATABASE_URL", url(pooled))
    monkeypatch.delenv("DIRECT_URL", raising=False)
    assert run(["monitor", "--json"]) == 0
    out, _ = capsys.readouterr()
    assert '"connections"' in out
    assert _settings(pooled) == before


def test_doctor_works_through_the_pooler_and_leaves_no_session_state(
    pooled: ConnInfo, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _settings(pooled)
    monkeypatch.setenv("DATABASE_URL", url(pooled))
    monkeypatch.delenv("DIRECT_URL", raising=False)
    assert run(["doctor", "--json"]) in (0, 1)
    assert run(["doctor", "connections", "--json"]) in (0, 1)
    capsys.readouterr()
    assert _settings(pooled) == before


@pytest.mark.parametrize(
    "command",
    [
        ["run", "daily"],
        ["cleanup", "--execute", "--yes"],
        ["maintain"],
        ["backup", "--dry-run"],
        ["explain"],
        ["fix", "constraints", "--yes"],
    ],
)
def test_session_work_through_the_pooler_alone_is_refused_in_one_line(
    pooled: ConnInfo,
    command: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", url(pooled))
    monkeypatch.delenv("DIRECT_URL", raising=False)
    assert run(command) == 2
    _, err = capsys.readouterr()
    assert "connection pooler" in err and "DIRECT_URL" in err, err
    assert len(err.strip().splitlines()) == 1


def test_a_backup_goes_to_the_direct_url_when_there_is_one(
    db: ConnInfo,
    pooled: ConnInfo,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", url(pooled))
    monkeypatch.setenv("DIRECT_URL", url(db))
    before = _settings(pooled)
    out_file = tmp_path / "ali.dump"
    assert run(["backup", "--output", str(out_file), "--json"]) == 0
    assert out_file.stat().st_size > 0
    capsys.readouterr()
    assert _settings(pooled) == before
