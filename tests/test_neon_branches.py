"""``pgrunbook branch`` end to end against a local Neon API v2 server (tests/neon_fake.py)."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgrunbook.cli.branch_cmd import branch
from pgrunbook.cli.main import cli, run
from pgrunbook.neon import NeonApi, NeonApiError, NeonBranches, NeonError, NeonSettings, PollPolicy
from pgrunbook.neon.api import retry_after_seconds
from pgrunbook.neon.client import backup_branch_name as default_name
from tests.neon_fake import FakeNeon, serve
from tests.support import PgServer, url

if "branch" not in cli.commands:  # until the lead registers it in cli/main.py
    cli.add_command(branch, "branch")

PASSWORD = "s3cret-Pw"


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeNeon]:
    neon = FakeNeon(connection_uri=f"postgresql://app:{PASSWORD}@127.0.0.1:1/app")
    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):  # loopback only, never a proxy
        monkeypatch.delenv(proxy, raising=False)
        monkeypatch.delenv(proxy.lower(), raising=False)
    with serve(neon):
        monkeypatch.setenv("NEON_API_KEY", neon.api_key)
        monkeypatch.setenv("NEON_PROJECT_ID", neon.project_id)
        monkeypatch.setenv("NEON_API_URL", neon.base_url)
        yield neon


@pytest.fixture
def pgr(capsys: pytest.CaptureFixture[str], fake: FakeNeon) -> Iterator[Any]:
    outputs: list[str] = []

    def call(*args: str) -> Result:
        code = run(["branch", *args])
        out, err = capsys.readouterr()
        outputs.append(out + err)
        return Result(code, out, err)

    yield call
    for text in outputs:  # the API key never reaches the user, whatever happened
        assert fake.api_key not in text


def one_line_error(result: Result, *phrases: str) -> str:
    assert result.code == 2, result
    assert result.out == ""
    lines = result.err.strip().splitlines()  # progress lines, then the error
    line = lines[-1]
    assert line.startswith("error:") and sum(x.startswith("error") for x in lines) == 1, lines
    for phrase in phrases:
        assert phrase in line, line
    return line


def test_create_waits_for_the_operations_and_masks_the_password(fake: FakeNeon, pgr: Any) -> None:
    fake.op_polls = 3
    result = pgr("create", "nightly", "--json")
    assert result.code == 0, result.err
    doc = result.json
    assert doc["branch"]["name"] == "nightly"
    assert doc["branch"]["current_state"] == "ready"  # init until create_branch finished
    assert doc["connection_uri"] == "postgresql://app:****@127.0.0.1:1/app"
    assert PASSWORD not in result.out + result.err
    # Two operations (create_branch, start_compute), each polled until its 3rd poll said
    # finished; only then was the branch read back.
    polls = fake.requests("GET", "")
    op_polls = [s for s in polls if "/operations/" in s.path]
    assert doc["polls"] == 6 and len(op_polls) == 6
    assert {s.path for s in op_polls} == {
        f"/api/v2/projects/{fake.project_id}/operations/{op}" for op in fake.operations
    }
    created = fake.by_name("nightly")
    assert fake.seen[-1].path.endswith(f"/branches/{created['id']}")
    assert fake.seen[-1].at >= op_polls[-1].at
    post = fake.requests("POST", "/branches")
    assert len(post) == 1 and all(s.authorization_ok for s in fake.seen)
    assert created["parent_id"] == fake.by_name("main")["id"]


def test_create_default_name_show_uri_connects(
    fake: FakeNeon, pgr: Any, pg_server: PgServer
) -> None:
    fake.connection_uri = url(pg_server.admin)
    fake.op_polls = 1
    before = default_name()
    result = pgr("create", "--show-uri")
    assert result.code == 0, result.err
    name = re.search(r"created branch (backup-\d{8}-\d{4}) \(br-", result.out)
    assert name and name[1] in (before, default_name())
    uri = result.out.split("connection: ", 1)[1].strip()
    assert uri == fake.connection_uri
    with psycopg.connect(uri) as conn:  # the URI the API returned reaches the database
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_default_name_is_utc_minutes() -> None:
    assert default_name(datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)) == "backup-20260304-0506"


def test_list_shows_parent_state_and_json(fake: FakeNeon, pgr: Any) -> None:
    fake.op_polls = 1
    assert pgr("create", "nightly").code == 0
    assert pgr("create", "child", "--parent", "nightly").code == 0
    doc = pgr("list", "--json").json
    assert doc["project_id"] == fake.project_id
    rows = {b["name"]: b for b in doc["branches"]}
    assert set(rows) == {"main", "nightly", "child"}
    assert rows["child"]["parent"] == "nightly" and rows["nightly"]["parent"] == "main"
    assert rows["main"]["default"] is True and rows["child"]["current_state"] == "ready"
    text = pgr("list").out
    assert "main (default)" in text and "child" in text and rows["child"]["id"] in text


def test_delete_dry_run_confirmation_and_delete(fake: FakeNeon, pgr: Any) -> None:
    fake.op_polls = 2
    old = fake.add_branch("old-backup")
    dry = pgr("delete", "old-backup", "--dry-run")
    assert dry.code == 0 and "would delete branch old-backup" in dry.out
    one_line_error(pgr("delete", "old-backup"), "needs confirmation", "--yes")
    assert old["id"] in fake.branches and not fake.requests("DELETE")
    done = pgr("delete", "old-backup", "--yes", "--json")
    assert done.code == 0 and done.json["deleted"]["id"] == old["id"]
    assert old["id"] not in fake.branches
    assert all(op["status"] == "finished" for op in fake.operations.values())
    one_line_error(pgr("delete", "main", "--yes"), "default branch")
    one_line_error(pgr("delete", "old-backup", "--yes"), "no branch named 'old-backup'", "main")


def test_restore_resets_target_and_preserves_the_old_state(fake: FakeNeon, pgr: Any) -> None:
    fake.op_polls = 2
    backup = fake.add_branch("backup-20260101-0000")
    main = fake.by_name("main")
    dry = pgr("restore", "main", "--from", backup["name"], "--dry-run")
    assert dry.code == 0 and "would reset Neon branch main" in dry.out and not fake.restores
    one_line_error(pgr("restore", "main", "--from", backup["name"]), "--yes")
    result = pgr(
        "restore", "main", "--from", backup["name"], "--preserve-under", "main-before", "--yes"
    )
    assert result.code == 0, result.err
    assert "old state kept as main-before" in result.out
    assert fake.restores == [
        {"target": main["id"], "source": backup["id"], "preserve_under_name": "main-before"}
    ]
    assert fake.by_name("main-before")["parent_id"] == main["id"]
    assert all(op["status"] == "finished" for op in fake.operations.values())
    one_line_error(pgr("restore", "main", "--from", "main", "--yes"), "from itself")


def test_429_is_retried_after_retry_after(fake: FakeNeon, pgr: Any) -> None:
    fake.hiccup(429, method="GET", path_suffix="/branches", retry_after="0.4")
    result = pgr("list")
    assert result.code == 0, result.err
    assert "/branches: HTTP 429, retrying in 0.4 s" in result.err
    calls = fake.requests("GET", "/branches")
    assert [c.status for c in calls] == [429, 200]
    assert calls[1].at - calls[0].at >= 0.4


def test_423_is_retried_with_backoff(fake: FakeNeon, pgr: Any) -> None:
    fake.op_polls = 1
    fake.add_branch("snap")
    fake.hiccup(423, method="POST", path_suffix="/restore")  # no Retry-After: backoff 0.5 s
    fake.hiccup(423, method="POST", path_suffix="/restore", retry_after="0", times=2)
    result = pgr("restore", "main", "--from", "snap", "--yes", "--json")
    assert result.code == 0, result.err
    calls = fake.requests("POST", "/restore")
    assert [c.status for c in calls] == [423, 423, 423, 200]
    assert calls[1].at - calls[0].at >= 0.5  # the first backoff step
    assert 0.1 <= calls[2].at - calls[1].at < 0.5  # Retry-After: 0 still waits the minimum
    assert len(fake.restores) == 1


def test_retries_give_up_with_one_line(fake: FakeNeon, pgr: Any) -> None:
    fake.hiccup(429, retry_after="0", times=10)
    line = one_line_error(pgr("list"), "HTTP 429", "rate limit", "still after 6 attempts")
    assert len(fake.seen) == 6, line


def test_api_errors_are_one_line_without_the_key(
    fake: FakeNeon, pgr: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.hiccup(500, method="POST", message="internal error")
    one_line_error(pgr("create", "x"), "HTTP 500", "internal error", "try again later")
    assert len(fake.requests("POST")) == 1  # a failed POST is not repeated
    monkeypatch.setenv("NEON_API_URL", "http://127.0.0.1:1/api/v2")  # nothing listens
    line = one_line_error(pgr("create", "x"), "cannot reach the Neon API at 127.0.0.1:1")
    assert "may have been applied" not in line
    monkeypatch.setenv("NEON_API_URL", fake.base_url)
    monkeypatch.setenv("NEON_PROJECT_ID", "no-such-project")
    one_line_error(pgr("list"), "HTTP 404", "project not found", "--project")
    assert pgr("list", "--project", fake.project_id).code == 0  # --project wins
    monkeypatch.setenv("NEON_API_KEY", "wrong-key-abcdef123456")
    line = one_line_error(pgr("list", "--project", fake.project_id), "HTTP 401", "NEON_API_KEY")
    assert "wrong-key" not in line
    monkeypatch.delenv("NEON_API_KEY")
    one_line_error(pgr("list"), "NEON_API_KEY is not set")
    monkeypatch.setenv("NEON_API_KEY", fake.api_key)
    monkeypatch.delenv("NEON_PROJECT_ID")
    one_line_error(pgr("list"), "no Neon project id", "NEON_PROJECT_ID")


def test_failed_operation_is_one_error(fake: FakeNeon, pgr: Any) -> None:
    fake.op_polls = 2
    fake.fail_operations = "could not start compute: out of capacity"
    one_line_error(
        pgr("create", "doomed"),
        "operation create_branch",
        "failed: could not start compute: out of capacity",
    )


def test_the_key_stays_out_of_repr_logs_and_exceptions(
    fake: FakeNeon, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = NeonSettings.from_env()
    assert settings.api_key == fake.api_key
    with NeonApi(settings) as api:
        assert fake.api_key not in repr(settings) + repr(api)
        api.request("GET", f"/projects/{fake.project_id}/branches")
        with pytest.raises(NeonApiError) as caught:
            api.request("GET", f"/projects/{fake.project_id}/branches/br-missing")
    assert caught.value.status == 404
    assert fake.api_key not in str(caught.value) + repr(caught.value)
    assert "httpx" in caplog.text or "httpcore" in caplog.text  # the loggers did log
    assert fake.api_key not in caplog.text


def test_operations_are_waited_for_at_most_the_limit(fake: FakeNeon) -> None:
    fake.op_polls = 1000
    with NeonApi(NeonSettings.from_env()) as api:
        neon = NeonBranches(api, PollPolicy(interval=0.05, total=0.3))
        started = time.monotonic()
        with pytest.raises(NeonError, match=r"create_branch .* still running after 0.3 s"):
            neon.create("slow")
    assert time.monotonic() - started < 1.0
    assert 3 <= neon.polls <= 6


def test_retry_after_forms() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("1.5") == 1.5
    assert retry_after_seconds("Thu, 01 Jan 2026 12:00:03 GMT", now) == 3.0
    assert retry_after_seconds("-4") == 0.0
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


def test_the_project_comes_from_pgrunbook_toml_when_not_given(
    fake: FakeNeon,
    pgr: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NEON_PROJECT_ID")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pgrunbook.toml").write_text(f'[neon]\nproject_id = "{fake.project_id}"\n')
    assert pgr("list").code == 0
    (tmp_path / "pgrunbook.toml").write_text("[neon]\nproject_id = 42\n")
    one_line_error(pgr("list"), "[neon] project_id must be a non-empty string")
    (tmp_path / "pgrunbook.toml").write_text('[neon]\nproject = "x"\n')
    one_line_error(pgr("list"), "[neon] unknown key 'project'")
