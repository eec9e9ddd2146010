"""maintain: VACUUM (ANALYZE) of a churned table, REINDEX CONCURRENTLY under a live writer."""

from __future__ import annotations

import json
import threading
from typing import Any

import psycopg
import pytest

from pgrunbook.cli.main import run
from pgrunbook.discover.checks import bloat
from pgrunbook.dsn import ConnInfo
from pgrunbook.maintain.choose import choose
from pgrunbook.maintain.run import maintain
from tests.support import scalar, url

# 20,000 rows, every one updated once and 5,000 deleted: 25,000 dead tuples, no ANALYZE.
CHURN = """
CREATE TABLE churn (id int PRIMARY KEY, v int NOT NULL);
INSERT INTO churn SELECT g, g FROM generate_series(1, 20000) g;
UPDATE churn SET v = v + 1;
DELETE FROM churn WHERE id <= 5000;
SELECT pg_stat_force_next_flush();
"""

# 100,000 rows, 9 of every 10 deleted and vacuumed: the index keeps 10% of its entries.
BLOATED = """
CREATE EXTENSION pgstattuple;
CREATE TABLE bloaty (id int PRIMARY KEY, k int NOT NULL);
CREATE INDEX bloaty_k_idx ON bloaty (k);
INSERT INTO bloaty SELECT g, g FROM generate_series(1, 100000) g;
DELETE FROM bloaty WHERE id % 10 <> 0;
VACUUM ANALYZE bloaty;
"""

DEAD_SQL = "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'churn'"
VACUUMED_SQL = "SELECT last_vacuum IS NOT NULL FROM pg_stat_user_tables WHERE relname = 'churn'"


def setup(info: ConnInfo, script: str) -> None:
    """Run ``script`` one statement at a time (VACUUM cannot run in a transaction, nor
    in a multi-statement query string)."""
    with psycopg.connect(info.conninfo(), password=info.password or "", autocommit=True) as c:
        for statement in script.split(";"):
            if statement.strip():
                c.execute(statement.encode())


def churned(info: ConnInfo) -> None:
    setup(info, CHURN)


def cli_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    code = run(["maintain", "--json", *args])
    out, err = capsys.readouterr()
    assert code == 0, err
    document: dict[str, Any] = json.loads(out)
    return document


def test_dry_run_lists_and_changes_nothing(
    capsys: pytest.CaptureFixture[str], empty_db: ConnInfo
) -> None:
    churned(empty_db)
    doc = cli_json(capsys, "--dry-run", "--dsn", url(empty_db))
    assert doc["dry_run"] is True
    [table] = doc["tables"]
    assert table["table"] == "public.churn"
    assert table["sql"] == 'VACUUM (ANALYZE) "public"."churn"'
    assert table["reasons"] == [
        "62.5% dead tuples (25,000), over the 10% threshold",
        "never analyzed",
    ]
    assert doc["indexes"] == []
    assert scalar(empty_db, DEAD_SQL) == 25000
    assert scalar(empty_db, VACUUMED_SQL) is False


def test_vacuum_removes_dead_tuples(capsys: pytest.CaptureFixture[str], empty_db: ConnInfo) -> None:
    churned(empty_db)
    doc = cli_json(capsys, "--dsn", url(empty_db))
    [table] = doc["tables"]
    assert table["table"] == "public.churn"
    assert table["before"]["dead_tuples"] == 25000
    assert table["after"]["dead_tuples"] == 0
    assert table["after"]["live_tuples"] == 15000
    assert scalar(empty_db, DEAD_SQL) == 0
    assert scalar(empty_db, VACUUMED_SQL) is True
    # Nothing left to do: analyzed, no dead tuples.
    assert cli_json(capsys, "--dry-run", "--dsn", url(empty_db))["tables"] == []


def test_reindex_concurrently_under_a_writer(empty_db: ConnInfo) -> None:
    setup(empty_db, BLOATED)
    conninfo = empty_db.conninfo()
    password = empty_db.password or ""
    relfilenode = "SELECT relfilenode FROM pg_class WHERE relname = 'bloaty_k_idx'"
    before = scalar(empty_db, relfilenode)
    stop, errors_seen, written = threading.Event(), [], [0]

    def writer() -> None:
        with psycopg.connect(conninfo, password=password, autocommit=True) as w:
            n = 200_000
            while not stop.is_set():
                try:
                    w.execute("INSERT INTO bloaty VALUES (%s, %s)", (n, n))
                except psycopg.Error as exc:
                    errors_seen.append(exc)
                    return
                n += 1
                written[0] += 1

    limits = bloat.Thresholds(min_bytes=256 * 1024)
    with psycopg.connect(conninfo, password=password, autocommit=True) as conn:
        choice = choose(conn, "public", ["bloaty"], bloat_limits=limits)
        names = [i.name for i in choice.indexes]
        assert "bloaty_k_idx" in names
        assert all(i.method == "pgstatindex" and i.ratio > 0.8 for i in choice.indexes)
        thread = threading.Thread(target=writer)
        thread.start()
        try:
            statements: list[str] = []
            report = maintain(conn, choice, on_start=statements.append)
        finally:
            stop.set()
            thread.join()
    assert errors_seen == []
    assert written[0] > 0
    assert 'REINDEX INDEX CONCURRENTLY "public"."bloaty_k_idx"' in statements
    assert not any(s.startswith('REINDEX INDEX "') for s in statements)
    [result] = [r for r in report.indexes if r.index.name == "bloaty_k_idx"]
    assert result.after.relfilenode != result.before.relfilenode
    assert scalar(empty_db, relfilenode) != before
    assert result.after.bytes < result.before.bytes / 3
    valid = "SELECT indisvalid FROM pg_index WHERE indexrelid = 'bloaty_k_idx'::regclass"
    assert scalar(empty_db, valid) is True
    assert scalar(empty_db, "SELECT count(*) FROM bloaty") == 10000 + written[0]


def test_full_needs_yes(capsys: pytest.CaptureFixture[str], empty_db: ConnInfo) -> None:
    code = run(["maintain", "--full", "--dsn", url(empty_db)])
    _out, err = capsys.readouterr()
    assert code == 2
    lines = err.strip().splitlines()
    assert "ACCESS EXCLUSIVE" in lines[0]
    assert lines[1:] and "--yes" in lines[-1] and len(lines) == 2
