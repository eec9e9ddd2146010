"""cleanup's walk: by key (a row skipped while locked is taken on the second pass) and by
block range (``run_cleanup(by="blocks")``: exact rows, re-checked; a row the app holds is
skipped, its range visited again at the end of the walk)."""

from __future__ import annotations

import time
from typing import Any

import psycopg
from psycopg import sql

from pgrunbook.cleanup import BatchProgress, ResolvedPolicy, run_cleanup
from pgrunbook.cleanup.batches import CLEANUP_LOCKS
from pgrunbook.cleanup.blockranges import BlockRanges
from pgrunbook.dsn import ConnInfo
from tests.support import autocommit, retention_policies


def _rows(conn: psycopg.Connection[Any], p: ResolvedPolicy, matching: bool) -> dict[Any, int]:
    """key -> heap block of the table's rows (only the matching ones when asked)."""
    query = sql.SQL("SELECT {key}, (ctid::text::point)[0]::int FROM {table}").format(
        key=sql.Identifier(p.key), table=p.ident
    )
    if matching:
        query = sql.SQL("{} WHERE {}").format(query, p.predicate)
    return {row[0]: row[1] for row in conn.execute(query)}


def test_blocks_delete_exactly_the_matching_rows_range_by_range(db: ConnInfo) -> None:
    with autocommit(db) as conn:
        for p in retention_policies(conn).values():
            everything, doomed = _rows(conn, p, False), _rows(conn, p, True)
            assert len(doomed) > 100
            per_batch = BlockRanges(conn, p, 120, CLEANUP_LOCKS).blocks_per_batch
            assert per_batch == 2  # about 55 rows per page
            seen: list[BatchProgress] = []
            result = run_cleanup(conn, p, batch_size=120, by="blocks", on_batch=seen.append)
            assert (result.deleted, result.interrupted) == (len(doomed), False)
            # one batch per 2-page range holding matching rows, in block order
            assert result.batches == len({block // 2 for block in doomed.values()}) > 5
            assert [s.batch for s in seen] == list(range(1, result.batches + 1))
            assert set(_rows(conn, p, False)) == set(everything) - set(doomed)
            again = run_cleanup(conn, p, batch_size=120, by="blocks")
            assert (again.deleted, again.batches) == (0, 0)


def test_blocks_keep_a_row_that_stops_matching_ahead_of_the_walk(db: ConnInfo) -> None:
    with autocommit(db) as conn, autocommit(db) as app:
        p = retention_policies(conn)["read_notifications"]
        everything, doomed = _rows(conn, p, False), _rows(conn, p, True)
        last = max(doomed, key=lambda key: doomed[key])  # in the last block: deleted last
        unread = sql.SQL('UPDATE {t} SET "isRead" = false WHERE {key} = %s').format(
            t=p.ident, key=sql.Identifier(p.key)
        )

        def app_marks_unread(progress: BatchProgress) -> None:
            if progress.batch == 1:
                assert app.execute(unread, (last,)).rowcount == 1

        result = run_cleanup(conn, p, batch_size=60, by="blocks", on_batch=app_marks_unread)
        assert result.deleted == len(doomed) - 1
        assert set(_rows(conn, p, False)) == set(everything) - set(doomed) | {last}


def test_blocks_skip_a_row_the_app_holds_and_the_next_run_takes_it(db: ConnInfo) -> None:
    with autocommit(db) as conn, autocommit(db) as app:
        p = retention_policies(conn)["expired_refresh_tokens"]
        everything, doomed = _rows(conn, p, False), _rows(conn, p, True)
        held = max(doomed)
        hold = sql.SQL("SELECT 1 FROM {t} WHERE {key} = %s FOR UPDATE").format(
            t=p.ident, key=sql.Identifier(p.key)
        )
        app.execute("BEGIN")
        app.execute(hold, (held,))
        started = time.monotonic()
        result = run_cleanup(conn, p, by="blocks")
        elapsed = time.monotonic() - started
        # it waited 100 ms (twice: the walk and the visit at its end), never for the app
        assert elapsed < 2.0
        assert (result.deleted, result.interrupted) == (len(doomed) - 1, False)
        assert set(_rows(conn, p, False)) == set(everything) - set(doomed) | {held}
        app.execute("COMMIT")
        again = run_cleanup(conn, p, by="blocks")
        assert again.deleted == 1
        assert set(_rows(conn, p, False)) == set(everything) - set(doomed)


def test_blocks_take_a_row_released_during_the_walk_on_the_visit_at_its_end(
    db: ConnInfo,
) -> None:
    with autocommit(db) as conn, autocommit(db) as app:
        p = retention_policies(conn)["read_notifications"]
        everything, doomed = _rows(conn, p, False), _rows(conn, p, True)
        first = min(doomed, key=lambda key: doomed[key])  # in the first range
        hold = sql.SQL("SELECT 1 FROM {t} WHERE {key} = %s FOR UPDATE").format(
            t=p.ident, key=sql.Identifier(p.key)
        )
        app.execute("BEGIN")
        app.execute(hold, (first,))
        seen: list[BatchProgress] = []

        def release_after_two(progress: BatchProgress) -> None:
            seen.append(progress)
            if progress.batch == 2:
                assert first in _rows(conn, p, True)  # skipped, still there
                app.execute("COMMIT")

        result = run_cleanup(conn, p, batch_size=120, by="blocks", on_batch=release_after_two)
        assert (result.deleted, result.interrupted) == (len(doomed), False)
        # the walk deleted all but that row; the visit of its range at the end took it
        assert [s.deleted for s in seen][-2:] == [len(doomed) - 1, len(doomed)]
        assert set(_rows(conn, p, False)) == set(everything) - set(doomed)


def test_key_walk_takes_a_row_skipped_while_locked_on_its_second_pass(db: ConnInfo) -> None:
    with autocommit(db) as conn, autocommit(db) as app:
        p = retention_policies(conn)["expired_refresh_tokens"]
        everything, doomed = _rows(conn, p, False), _rows(conn, p, True)
        first = min(doomed)  # in the first batch's range, but locked: skipped
        hold = sql.SQL("SELECT 1 FROM {t} WHERE {key} = %s FOR UPDATE").format(
            t=p.ident, key=sql.Identifier(p.key)
        )
        app.execute("BEGIN")
        app.execute(hold, (first,))
        batches: list[BatchProgress] = []

        def release_after_two(progress: BatchProgress) -> None:
            batches.append(progress)
            if progress.batch == 2:
                assert first in _rows(conn, p, True)  # skipped, still there
                app.execute("COMMIT")

        result = run_cleanup(conn, p, batch_size=50, by="key", on_batch=release_after_two)
        assert (result.deleted, result.interrupted) == (len(doomed), False)
        # the first pass deleted all but that row; the second took it alone
        assert [b.deleted for b in batches][-2:] == [len(doomed) - 1, len(doomed)]
        assert set(_rows(conn, p, False)) == set(everything) - set(doomed)
