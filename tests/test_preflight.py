"""The pre-flight checklist on a real server: each item made red, then green."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta

import pytest

from pgrunbook import __version__
from pgrunbook.backup.record import BackupRecord, record_backup
from pgrunbook.cli.main import run
from pgrunbook.dsn import ConnInfo
from pgrunbook.preflight import preflight
from pgrunbook.preflight.checklist import Thresholds
from pgrunbook.target import resolve_target
from tests.support import autocommit, url


def _record(info: ConnInfo, *, verified: bool = True) -> None:
    with autocommit(info) as conn:
        record_backup(
            conn,
            BackupRecord(
                file="ali_backup_20261124_050000.dump",
                machine="test",
                format="custom",
                schema_only=False,
                size_bytes=123_456,
                duration_seconds=1.5,
                tables=13,
                tool_version=__version__,
                server_version="18",
                verified=verified,
            ),
        )


def _items(info: ConnInfo, **limits: object) -> dict[str, tuple[str, str]]:
    result = preflight(
        resolve_target(url(info)),
        sample_seconds=0.2,
        limits=Thresholds(**limits),  # type: ignore[arg-type]
    )
    return {i.name: (i.status, i.detail) for i in result.items}


def test_without_a_backup_preflight_fails_and_says_how_to_take_one(
    db: ConnInfo, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["preflight", "--dsn", url(db), "--sample-seconds", "0.2", "--json"]) == 1
    document = json.loads(capsys.readouterr().out)
    items = {i["name"]: i for i in document["items"]}
    assert document["passed"] is False
    assert [n for n, i in items.items() if i["status"] == "fail"] == ["backup"]
    assert items["backup"]["fix"].startswith("take one: pgrunbook backup")
    assert items["endpoint"]["status"] == "ok"
    assert set(items) == {
        "endpoint", "connections", "traffic", "long transactions", "replication lag", "backup"
    }  # fmt: skip


def test_a_recent_verified_backup_passes_and_an_old_one_does_not(db: ConnInfo) -> None:
    _record(db, verified=False)
    assert _items(db)["backup"][0] == "fail"  # an unverified archive is no way back
    _record(db)
    status, detail = _items(db)["backup"]
    assert status == "ok" and "ali_backup_20261124_050000.dump" in detail
    assert _items(db, backup_max_age=timedelta(seconds=0))["backup"][0] == "fail"


def test_a_long_open_transaction_is_flagged_with_its_pid(db: ConnInfo) -> None:
    with autocommit(db) as app:
        app.execute("BEGIN")
        app.execute('SELECT count(*) FROM "Message"')
        time.sleep(1.2)
        pid = app.info.backend_pid
        items = _items(db, long_xact_warn_seconds=0.5, long_xact_fail_seconds=1.0)
        app.execute("ROLLBACK")
    status, detail = items["long transactions"]
    assert status == "fail" and f"(pid {pid})" in detail
    assert _items(db)["long transactions"][0] == "ok"


def test_the_transaction_rate_counts_the_apps_commits(db: ConnInfo) -> None:
    done = threading.Event()

    def app() -> None:
        with autocommit(db) as conn:
            while not done.is_set():
                conn.execute("SELECT 1")  # autocommit: one transaction each
                time.sleep(0.002)

    worker = threading.Thread(target=app)
    worker.start()
    try:
        result = preflight(resolve_target(url(db)), sample_seconds=1.5)
    finally:
        done.set()
        worker.join()
    assert result.load is not None and result.load.transactions_per_second > 50


def test_a_pooled_url_alone_fails_the_endpoint_item(db: ConnInfo) -> None:
    pooled = url(db) + ("&" if "?" in url(db) else "?") + "pgbouncer=true"
    result = preflight(resolve_target(pooled), sample_seconds=0.2)
    endpoint = next(i for i in result.items if i.name == "endpoint")
    assert endpoint.status == "fail" and "DIRECT_URL" in (endpoint.fix or "")
