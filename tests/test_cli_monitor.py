"""``pgrunbook monitor`` on the command line: the lock tree a person sees, JSON, --watch."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Any

import pytest

from pgrunbook.cli.main import run
from pgrunbook.dsn import ConnInfo
from tests.support import execute
from tests.test_monitor import SNAPSHOT_KEYS, lock_chain

ROOT = Path(__file__).parent.parent
KEYS = SNAPSHOT_KEYS


def monitor(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = run(["monitor", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_shows_a_blocked_lock_chain(capsys: pytest.CaptureFixture[str], empty_db: ConnInfo) -> None:
    """The issue's acceptance test: two sessions holding and waiting, and a third behind."""
    with lock_chain(empty_db) as (pa, pb, pc):
        human = monitor(capsys, "--dsn", empty_db.conninfo())
        as_json = monitor(capsys, "--dsn", empty_db.conninfo(), "--json")

    code, out, err = human
    assert code == 0, err
    lines = out.splitlines()
    assert "Lock waits: 2 waiting behind 1 root blocker" in out
    at = {
        pid: next(i for i, line in enumerate(lines) if f"pid {pid} " in line)
        for pid in (pa, pb, pc)
    }
    assert at[pa] < min(at[pb], at[pc])
    indent = {pid: lines[at[pid]].index(f"pid {pid}") for pid in at}
    assert indent[pa] < indent[pb] == indent[pc]  # B and C under A
    assert "holder-a (" in lines[at[pa]] and "idle in transaction" in lines[at[pa]]
    assert "waits" in lines[at[pb] + 1] and "ShareLock on transactionid (public.t)" in out
    assert "AccessExclusiveLock on relation (public.t)" in lines[at[pc] + 1]
    assert lines[at[pc] + 2].strip() == f"also blocked by {pb}"
    assert "LOCK TABLE t IN ACCESS EXCLUSIVE MODE" in out
    assert max(len(line) for line in lines) <= 100

    code, out, err = as_json
    assert code == 0, err
    document: dict[str, Any] = json.loads(out)
    [root] = document["locks"]["roots"]
    assert root["pid"] == pa
    assert {n["pid"]: n["blocked_by"] for n in root["blocking"]} == {pb: [pa], pc: sorted([pa, pb])}


def test_json_is_one_document_with_the_keys(
    capsys: pytest.CaptureFixture[str], db: ConnInfo
) -> None:
    code, out, err = monitor(capsys, "--dsn", db.conninfo(), "--json", "--top", "3")
    assert code == 0, err
    document = json.loads(out)
    assert list(document) == KEYS
    assert document["server"]["database"] == db.dbname
    assert len(document["index_usage"]["least_used_indexes"]) == 3
    assert document["statements"]["available"] is False


def test_human_output_on_the_reference_database(
    capsys: pytest.CaptureFixture[str], db: ConnInfo
) -> None:
    execute(db, 'ANALYZE; SELECT count(*) FROM "Message";')
    code, out, err = monitor(capsys, "--dsn", db.conninfo())
    assert code == 0, err
    for title in (
        "pgrunbook monitor: database",
        "Connections:",
        "Lock waits: none",
        "Long-running queries (over 1 min): none",
        "Idle in transaction: none",
        "Cache hit ratio: database",
        "Least used indexes",
        "Replication: primary, no standbys connected",
        "Statements: pg_stat_statements is not installed",
    ):
        assert title in out, out
    assert max(len(line) for line in out.splitlines()) <= 100


def test_unknown_schema_is_one_line(capsys: pytest.CaptureFixture[str], empty_db: ConnInfo) -> None:
    code, out, err = monitor(capsys, "--dsn", empty_db.conninfo(), "--schema", "nope")
    assert (code, out) == (2, "")
    assert err.strip().splitlines() == [
        f"error: schema 'nope' does not exist in database '{empty_db.dbname}'; pass --schema, "
        "or ?schema= in the URL, naming an existing schema"
    ]


def test_watch_with_json_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = monitor(capsys, "--watch", "2", "--json", "--dsn", "postgresql://x@h/d")
    assert code == 2
    assert out == ""
    assert err.strip().splitlines() == [
        "error: --watch cannot be combined with --json; --json prints one snapshot; "
        "run it repeatedly for a series"
    ]


def _start_watch(info: ConnInfo, stdout: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "COLUMNS": "100", "LINES": "60", "TERM": "xterm"}
    command = [sys.executable, "-m", "pgrunbook", "monitor", "--watch", "0.5", "--top", "2"]
    return subprocess.Popen(
        [*command, "--dsn", info.conninfo()],
        cwd=ROOT,
        env=env,
        stdout=stdout,
        stderr=subprocess.PIPE,
    )


def _interrupt(proc: subprocess.Popen[bytes]) -> bytes:
    """Ctrl-C after a few refreshes: it ends cleanly, with exit code 0; returns stdout."""
    try:
        time.sleep(2.5)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert err == b""
    return out or b""


def test_watch_refreshes_in_place_on_a_terminal(empty_db: ConnInfo) -> None:
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 60, 100, 0, 0))
    proc = _start_watch(empty_db, follower)
    os.close(follower)
    _interrupt(proc)
    screen = b""
    while select.select([leader], [], [], 0.2)[0]:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal is gone with the process
            break
        if not chunk:
            break
        screen += chunk
    os.close(leader)
    raw = screen.decode(errors="replace")
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", raw)
    assert text.count("pgrunbook monitor: database") >= 3
    assert "every 0.5 s, Ctrl-C to stop" in text
    assert "\x1b[2K" in raw and "\x1b[1A" in raw  # erased and redrawn: in place


def test_watch_into_a_pipe_prints_one_snapshot_after_another(empty_db: ConnInfo) -> None:
    text = _interrupt(_start_watch(empty_db, subprocess.PIPE)).decode()
    assert text.count("pgrunbook monitor: database") >= 3
    assert "\x1b[" not in text  # no cursor movements in a pipe
