"""The safety gate: apply, fix constraints, cleanup --execute and maintain --full take a
backup first when none is recent, and say so; --backup none skips it only when asked."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pgrunbook.cli.gate_options import PreflightFailed, preflight_check
from pgrunbook.cli.main import run
from pgrunbook.dsn import ConnInfo
from pgrunbook.preflight.checklist import Thresholds
from pgrunbook.target import resolve_target
from tests.neon_fake import FakeNeon, serve
from tests.support import scalar, url

BACKUPS = "SELECT format, file FROM pgrunbook.backups ORDER BY id"


@pytest.fixture(autouse=True)
def _gate_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGRUNBOOK_BACKUP", raising=False)


def _backups(info: ConnInfo) -> list[tuple[str, str]]:
    with psycopg.connect(info.conninfo(), password=info.password, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass('pgrunbook.backups') IS NOT NULL").fetchone()
        if not exists or not exists[0]:
            return []
        return [(str(r[0]), str(r[1])) for r in conn.execute(BACKUPS)]


def test_apply_takes_a_pg_dump_first_then_finds_it_recent(
    db: ConnInfo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--dsn", url(db), "--yes", "--backup-dir", str(tmp_path)]
    assert run(["apply", "triggers", *base]) == 0
    err = capsys.readouterr().err
    assert "no backup is recorded in this database" in err and "taking one first (pg_dump)" in err
    [(fmt, file)] = _backups(db)
    dumps = list(tmp_path.glob("*_backup_*.dump"))
    assert fmt == "custom" and [str(d.resolve()) for d in dumps] == [file]
    # a recent backup: no second dump
    assert run(["apply", "audit", *base]) == 0
    err = capsys.readouterr().err
    assert "backup:" in err and "old" in err and "taking one" not in err
    assert len(_backups(db)) == 1 and len(list(tmp_path.glob("*.dump"))) == 1
    # nothing to apply: no gate at all
    assert run(["apply", "triggers", *base]) == 0
    assert "backup:" not in capsys.readouterr().err


def test_an_old_backup_is_replaced_and_none_must_be_asked_for(
    db: ConnInfo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--dsn", url(db), "--yes", "--backup-dir", str(tmp_path)]
    assert run(["apply", "triggers", *base, "--backup", "none"]) == 0
    assert "no backup checked or taken (--backup none)" in capsys.readouterr().err
    assert _backups(db) == []
    assert run(["apply", "audit", *base, "--backup-max-age", "0"]) == 0
    assert run(["fix", "constraints", *base, "--backup-max-age", "0"]) == 0
    err = capsys.readouterr().err
    assert err.count("taking one first (pg_dump)") == 2
    assert "the last backup is" in err
    assert [f for f, _ in _backups(db)] == ["custom", "custom"]


def test_a_backup_that_cannot_be_made_stops_the_change(
    db: ConnInfo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no-such-dir"
    code = run(["apply", "triggers", "--dsn", url(db), "--yes", "--backup-dir", str(missing)])
    assert code == 2
    assert "does not exist" in capsys.readouterr().err
    assert scalar(db, "SELECT count(*) FROM pg_trigger WHERE starts_with(tgname, 'trg_')") == 0


def test_cleanup_execute_and_maintain_full_pass_the_gate(
    db: ConnInfo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--dsn", url(db), "--yes", "--backup-dir", str(tmp_path)]
    assert run(["cleanup", "--execute", *base]) == 0
    assert "taking one first (pg_dump)" in capsys.readouterr().err
    assert run(["maintain", "--full", "--table", "Wallet", *base]) == 0
    err = capsys.readouterr().err
    assert "taking one" not in err and "backup:" in err
    assert len(_backups(db)) == 1
    # a dry run never takes one
    assert run(["cleanup", "--dsn", url(db), "--backup-dir", str(tmp_path)]) == 0
    assert run(["maintain", "--full", "--dry-run", "--dsn", url(db)]) == 0
    assert len(_backups(db)) == 1


@pytest.fixture
def fake_neon(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeNeon]:
    neon = FakeNeon(connection_uri="postgresql://app:secret@127.0.0.1:1/app")
    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(proxy, raising=False)
    with serve(neon):
        monkeypatch.setenv("NEON_API_KEY", neon.api_key)
        monkeypatch.setenv("NEON_PROJECT_ID", neon.project_id)
        monkeypatch.setenv("NEON_API_URL", neon.base_url)
        yield neon


def test_backup_neon_makes_a_branch_and_records_it(
    db: ConnInfo, fake_neon: FakeNeon, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["apply", "triggers", "--dsn", url(db), "--yes", "--backup", "neon"]) == 0
    err = capsys.readouterr().err
    assert "taking one first (neon)" in err and "made Neon branch backup-" in err
    [(fmt, file)] = _backups(db)
    assert fmt == "neon_branch" and file.startswith("neon branch backup-")
    assert fake_neon.api_key not in err


def test_apply_prints_the_preflight_and_a_failed_item_refuses_unless_forced(
    db: ConnInfo, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["apply", "triggers", "--dsn", url(db), "--yes", "--backup", "none"]) == 0
    err = capsys.readouterr().err
    for item in ("endpoint", "connections", "traffic", "long transactions", "replication lag"):
        assert f"pre-flight ok {item}:" in err, item
    strict = Thresholds(long_xact_warn_seconds=0.2, long_xact_fail_seconds=0.5)
    with psycopg.connect(db.conninfo(), password=db.password, autocommit=True) as app:
        app.execute("BEGIN")
        app.execute('SELECT count(*) FROM "Wallet"')
        time.sleep(0.8)
        with pytest.raises(PreflightFailed) as refused:
            preflight_check(resolve_target(url(db)), 0.1, force=False, limits=strict)
        assert refused.value.exit_code == 1
        assert "long transactions" in str(refused.value) and "--force" in str(refused.value)
        forced = preflight_check(resolve_target(url(db)), 0.1, force=True, limits=strict)
        app.execute("ROLLBACK")
    assert [i.name for i in forced.failed] == ["long transactions"]
