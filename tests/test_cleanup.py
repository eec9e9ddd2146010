"""cleanup (script 08): dry run, batched deletes, re-checked predicate, interruption."""

from __future__ import annotations

import json

import pytest
from psycopg import sql

from pgrunbook.cleanup import BatchProgress, dry_run, run_cleanup
from pgrunbook.cleanup.batches import BatchOrder
from pgrunbook.cli.main import run
from pgrunbook.dsn import ConnInfo
from pgrunbook.reference import Naming
from tests.support import Template, autocommit, keys_of, retention_policies, scalar, url

NAMINGS = [("db", Naming.PRISMA), ("snake_db", Naming.SNAKE)]
EXPECTED = {
    "expired_refresh_tokens": "refresh_tokens_expired_over_7_days",
    "read_notifications": "read_notifications_over_30_days",
}


@pytest.mark.parametrize(("fixture", "naming"), NAMINGS)
def test_dry_run_counts_exactly_and_changes_nothing(
    request: pytest.FixtureRequest, fixture: str, naming: Naming, templates: dict[Naming, Template]
) -> None:
    info: ConnInfo = request.getfixturevalue(fixture)
    manifest = templates[naming].report.anomalies
    with autocommit(info) as conn:
        policies = retention_policies(conn)
        before = {name: keys_of(conn, p, matching=False) for name, p in policies.items()}
        for name, key in EXPECTED.items():
            result = dry_run(conn, policies[name], 7, "key")
            assert result.rows == manifest[key] > 0
            assert result.oldest is not None and result.newest is not None
            assert result.oldest <= result.newest
            assert "FOR UPDATE SKIP LOCKED" in result.sql and "LIMIT 7" in result.sql
            blocks = dry_run(conn, policies[name], 7)  # the default order: by block range
            assert blocks.rows == result.rows
            assert "ctid >= '(0,0)'::tid AND ctid < '(1,0)'::tid" in blocks.sql
        assert {name: keys_of(conn, p, matching=False) for name, p in policies.items()} == before
    code = run(["cleanup", "--dsn", url(info), "--json"])
    assert code == 0


@pytest.mark.parametrize("order", ["blocks", "key"])
@pytest.mark.parametrize(("fixture", "naming"), NAMINGS)
def test_execute_deletes_exactly_the_matching_rows(
    request: pytest.FixtureRequest,
    fixture: str,
    naming: Naming,
    order: BatchOrder,
    templates: dict[Naming, Template],
) -> None:
    info: ConnInfo = request.getfixturevalue(fixture)
    manifest = templates[naming].report.anomalies
    with autocommit(info) as conn:
        policies = retention_policies(conn)
        for name, key in EXPECTED.items():
            p = policies[name]
            everything, doomed = (
                keys_of(conn, p, matching=False),
                keys_of(conn, p, matching=True),
            )
            assert len(doomed) == manifest[key]
            batches: list[BatchProgress] = []
            result = run_cleanup(conn, p, batch_size=7, by=order, on_batch=batches.append)
            assert (result.deleted, result.interrupted) == (len(doomed), False)
            if order == "key":  # exactly batch_size rows a batch (blocks: about)
                assert result.batches == -(-len(doomed) // 7) > 1
            assert len(batches) == result.batches > 1
            assert [b.deleted for b in batches][-1] == len(doomed)
            assert keys_of(conn, p, matching=False) == everything - doomed
            again = run_cleanup(conn, p, batch_size=7, by=order)
            assert (again.deleted, again.batches) == (0, 0)
        recorded = conn.execute(
            "SELECT policy, deleted, interrupted FROM pgrunbook.cleanup_runs ORDER BY id"
        ).fetchall()
        assert recorded == [
            ("expired_refresh_tokens", manifest["refresh_tokens_expired_over_7_days"], False),
            ("expired_refresh_tokens", 0, False),
            ("read_notifications", manifest["read_notifications_over_30_days"], False),
            ("read_notifications", 0, False),
        ]


@pytest.mark.parametrize(("fixture", "naming"), NAMINGS)
def test_row_that_stops_matching_between_batches_is_kept(
    request: pytest.FixtureRequest, fixture: str, naming: Naming
) -> None:
    info: ConnInfo = request.getfixturevalue(fixture)
    with autocommit(info) as conn, autocommit(info) as app:
        p = retention_policies(conn)["read_notifications"]
        doomed = sorted(keys_of(conn, p, matching=True))  # type: ignore[type-var]
        last = doomed[-1]  # deleted last (batches go by key): still there after batch 1
        everything = keys_of(conn, p, matching=False)
        unread = sql.SQL("UPDATE {t} SET {col} = false WHERE {key} = %s").format(
            t=p.ident, col=sql.Identifier(naming.column("isRead")), key=sql.Identifier(p.key)
        )

        def app_marks_unread(progress: BatchProgress) -> None:
            if progress.batch == 1:
                assert app.execute(unread, (last,)).rowcount == 1

        result = run_cleanup(conn, p, batch_size=3, by="key", on_batch=app_marks_unread)
        assert result.deleted == len(doomed) - 1
        assert keys_of(conn, p, matching=False) == everything - set(doomed) | {last}


def test_interrupted_run_leaves_whole_batches_and_resumes(db: ConnInfo) -> None:
    with autocommit(db) as conn:
        p = retention_policies(conn)["expired_refresh_tokens"]
        everything, doomed = (
            keys_of(conn, p, matching=False),
            keys_of(conn, p, matching=True),
        )
        assert len(doomed) > 21

        stopped = run_cleanup(conn, p, batch_size=7, by="key", max_batches=2)
        assert (stopped.deleted, stopped.batches, stopped.interrupted) == (14, 2, True)
        assert len(keys_of(conn, p, matching=True)) == len(doomed) - 14

        def ctrl_c(progress: BatchProgress) -> None:
            if progress.batch == 2:
                raise KeyboardInterrupt

        interrupted = run_cleanup(conn, p, batch_size=7, by="key", on_batch=ctrl_c)
        assert (interrupted.deleted, interrupted.interrupted) == (14, True)
        assert len(keys_of(conn, p, matching=True)) == len(doomed) - 28

        flags = iter([False, True])
        paused = run_cleanup(conn, p, batch_size=7, by="key", should_stop=lambda: next(flags))
        assert (paused.deleted, paused.interrupted) == (min(7, len(doomed) - 28), True)

        rest = run_cleanup(conn, p, batch_size=7, by="key")
        assert rest.deleted == len(doomed) - 28 - paused.deleted and not rest.interrupted
        assert keys_of(conn, p, matching=False) == everything - doomed
        assert scalar(db, "SELECT count(*) FROM pgrunbook.cleanup_runs WHERE interrupted") == 3


def test_cli_execute_needs_yes_then_deletes(
    db: ConnInfo, templates: dict[Naming, Template], capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = templates[Naming.PRISMA].report.anomalies
    args = ["cleanup", "--dsn", url(db), "--policy", "read_notifications"]
    assert run([*args, "--execute"]) == 2
    capsys.readouterr()
    assert run(["cleanup", "--dsn", url(db), "--policy", "nope"]) == 2
    capsys.readouterr()
    assert run([*args, "--execute", "--yes", "--batch-size", "7", "--json", "--vacuum"]) == 0
    (result,) = json.loads(capsys.readouterr().out)["results"]
    assert result["deleted"] == manifest["read_notifications_over_30_days"]
    assert result["vacuumed"] is True and result["interrupted"] is False
    assert run([*args, "--json"]) == 0
    (plan,) = json.loads(capsys.readouterr().out)["dry_run"]
    assert plan["rows"] == 0
