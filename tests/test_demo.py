"""``pgrunbook demo`` end to end on its own embedded server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pgrunbook.cli.main import run
from pgrunbook.embedded import LocalServer
from tests.support import scalar


def test_demo_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data_dir = tmp_path / "demo"
    code = run(["demo", "--data-dir", str(data_dir), "--scale", "tiny", "--json", "--keep"])
    document = json.loads(capsys.readouterr().out)
    server = LocalServer(data_dir)
    try:
        assert code == 0
        assert server.is_running()
        assert document["defects_found_by_sql"]["self_gifts"] == 4
        assert document["seed"]["rows"]["Message"] == 10_000
        assert len(document["tables"]) == 12
        findings = document["discovery"]["findings"]
        dead = [f["object"] for f in findings if f["check"] == "dead_tuples"]
        assert dead == ["public.Wallet"]
        assert len(document["discovery"]["facts"]["tables"]) == 12
        assert document["dsn"] == server.dsn("ali_demo").display()
        assert (
            scalar(server.dsn("ali_demo"), 'SELECT count(*) FROM "Follow"')
            == (document["seed"]["rows"]["Follow"])
        )
    finally:
        assert run(["demo", "--data-dir", str(data_dir), "--stop"]) == 0
    assert not server.is_running()


def test_demo_human_output_stops_the_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "demo"
    assert run(["demo", "--data-dir", str(data_dir), "--scale", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "pgrunbook discover: database ali_demo, schema public" in out
    assert "public.Wallet" in out and "dead tuples" in out
    assert "pgrunbook discover *" in out and "pgrunbook apply indexes" in out
    assert not LocalServer(data_dir).is_running()
