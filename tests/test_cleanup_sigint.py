"""``pgrunbook cleanup --execute`` stopped by a real SIGINT: whole batches, resumable."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Final

import psycopg
from psycopg import sql

from pgrunbook.catalog import load_catalog
from pgrunbook.cleanup import resolve_policies
from pgrunbook.cleanup.batches import CLEANUP_LOCKS
from pgrunbook.cleanup.blockranges import BlockRanges
from pgrunbook.dsn import ConnInfo
from pgrunbook.profile import load_profile
from tests.support import rows, scalar, url

PGRUNBOOK: Final = Path(sys.executable).parent / "pgrunbook"
BATCH: Final = 500
EXTRA: Final = 12_000  # expired tokens added to the seeded ones: many batches

# Tokens that expired 10 days ago (the policy deletes those older than 7), for one user.
ADD_EXPIRED: Final = sql.SQL("""
INSERT INTO "RefreshToken" (id, "userId", token, "expiresAt", "createdAt")
SELECT gen_random_uuid(), (SELECT id FROM "User" ORDER BY id LIMIT 1),
       md5('sigint' || g) || md5('token' || g),
       (now() AT TIME ZONE 'UTC') - interval '10 days',
       (now() AT TIME ZONE 'UTC') - interval '17 days'
  FROM generate_series(1, {n}) g
""")
MATCHING: Final = (
    'SELECT id FROM "RefreshToken" WHERE "expiresAt" < (now() AT TIME ZONE \'UTC\') '
    "- make_interval(days => 7)"
)
ALL_IDS: Final = 'SELECT id FROM "RefreshToken"'
COUNT: Final = 'SELECT count(*) FROM "RefreshToken"'
RUNS: Final = (
    "SELECT deleted, batches, batch_size, interrupted FROM pgrunbook.cleanup_runs ORDER BY id"
)


def _ids(info: ConnInfo, query: str) -> set[object]:
    return {row[0] for row in rows(info, query)}


def _cleanup(info: ConnInfo, *extra: str) -> subprocess.Popen[str]:
    command = [str(PGRUNBOOK), "cleanup", "--dsn", url(info), "--policy",
               "expired_refresh_tokens", "--execute", "--yes", *extra]  # fmt: skip
    env = {**os.environ, "DATABASE_URL": "", "DIRECT_URL": "", "COLUMNS": "200"}
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _deleted_so_far(info: ConnInfo, before: int, proc: subprocess.Popen[str]) -> int:
    """Poll the table until a batch has committed (cleanup_runs is written only at the end)."""
    with psycopg.connect(info.conninfo(), password=info.password, autocommit=True) as conn:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and proc.poll() is None:
            row = conn.execute(COUNT).fetchone()
            assert row is not None
            if row[0] < before:
                return before - int(row[0])
            time.sleep(0.01)
    raise AssertionError(f"no batch committed (exit code {proc.poll()})")


def test_sigint_stops_after_whole_batches_and_a_rerun_finishes(db: ConnInfo) -> None:
    assert PGRUNBOOK.exists(), f"{PGRUNBOOK}: the package's entry point is not installed"
    with psycopg.connect(db.conninfo(), password=db.password, autocommit=True) as conn:
        conn.execute(ADD_EXPIRED.format(n=sql.Literal(EXTRA)))
    everything, doomed = _ids(db, ALL_IDS), _ids(db, MATCHING)
    kept = everything - doomed
    assert len(doomed) > EXTRA and kept

    # 24+ batches with a 0.3 s pause after each: Ctrl-C lands after the first one or two.
    proc = _cleanup(db, "--order", "key", "--batch-size", str(BATCH), "--sleep", "0.3")
    try:
        assert _deleted_so_far(db, len(everything), proc) >= BATCH
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "stopping after the current batch" in err

    left = _ids(db, ALL_IDS)
    deleted = len(everything) - len(left)
    assert deleted > 0 and deleted % BATCH == 0 and deleted < len(doomed)
    assert kept <= left  # no row outside the policy was deleted
    assert everything - left <= doomed
    line = next(x for x in out.splitlines() if "RefreshToken" in x)
    assert "interrupted: run again to finish" in line
    assert re.search(rf"\b{deleted:,}\b", line), line
    assert rows(db, RUNS) == [(deleted, deleted // BATCH, BATCH, True)]

    second = _cleanup(db, "--order", "key", "--batch-size", str(BATCH), "--json")
    out, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    (result,) = json.loads(out)["results"]
    assert (result["deleted"], result["interrupted"]) == (len(doomed) - deleted, False)
    assert _ids(db, ALL_IDS) == kept

    third = _cleanup(db, "--json")
    out, err = third.communicate(timeout=60)
    assert third.returncode == 0, err
    assert [r["deleted"] for r in json.loads(out)["results"]] == [0]
    assert scalar(db, "SELECT count(*) FROM pgrunbook.cleanup_runs WHERE NOT interrupted") == 2
    assert rows(db, RUNS)[1:] == [
        (len(doomed) - deleted, -(-(len(doomed) - deleted) // BATCH), BATCH, False),
        (0, 0, 5000, False),
    ]


BLOCKS: Final = 'SELECT id, (ctid::text::point)[0]::int FROM "RefreshToken"'


def test_sigint_in_block_order_leaves_whole_ranges_and_a_rerun_finishes(db: ConnInfo) -> None:
    """The default order: what was deleted is exactly the matching rows of the first ranges
    (no range half done), and a second run deletes the rest."""
    with psycopg.connect(db.conninfo(), password=db.password, autocommit=True) as conn:
        conn.execute(ADD_EXPIRED.format(n=sql.Literal(EXTRA)))
        conn.execute('VACUUM (ANALYZE) "RefreshToken"')
        p = resolve_policies(load_catalog(conn, "public"), load_profile().retention)[0][0]
        per_range = BlockRanges(conn, p, BATCH, CLEANUP_LOCKS).blocks_per_batch
    block = {row[0]: int(str(row[1])) for row in rows(db, BLOCKS)}
    everything, doomed = set(block), _ids(db, MATCHING)
    kept = everything - doomed

    proc = _cleanup(db, "--batch-size", str(BATCH), "--sleep", "0.3")
    try:
        assert _deleted_so_far(db, len(everything), proc) > 0
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    gone = everything - _ids(db, ALL_IDS)
    assert gone and gone <= doomed and len(gone) < len(doomed)
    # whole ranges: every matching row below the end of the last range done is gone
    end = (max(block[k] for k in gone) // per_range + 1) * per_range
    assert gone == {k for k in doomed if block[k] < end}
    assert rows(db, RUNS) == [(len(gone), end // per_range, BATCH, True)]

    second = _cleanup(db, "--json")
    out, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    (result,) = json.loads(out)["results"]
    assert (result["deleted"], result["interrupted"]) == (len(doomed) - len(gone), False)
    assert _ids(db, ALL_IDS) == kept
