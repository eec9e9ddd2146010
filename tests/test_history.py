"""Size snapshots (pgrunbook.snapshots): the record the quarterly review reads growth from."""

from __future__ import annotations

from pgrunbook.connect import connect
from pgrunbook.dsn import ConnInfo
from pgrunbook.history import history, record, snapshot_statement
from tests.support import scalar


def test_history_is_empty_before_the_first_snapshot(db: ConnInfo) -> None:
    with connect(db, autocommit=True) as conn:
        assert history(conn) == []


def test_record_stores_the_database_and_table_sizes(db: ConnInfo) -> None:
    with connect(db, autocommit=True) as conn:
        record(conn, "public", "monthly", "pgrunbook run")
        record(conn, "public", "quarterly", "pg_cron")
        taken = history(conn)
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    assert [(s.cadence, s.source) for s in taken] == [
        ("monthly", "pgrunbook run"),
        ("quarterly", "pg_cron"),
    ]
    assert row is not None
    size = int(str(row[0]))
    # The database grows a little between the two reads (the snapshot rows themselves).
    assert 0 < taken[0].database_bytes <= size
    assert taken[0].taken_at <= taken[1].taken_at
    message_bytes = scalar(
        db, "SELECT (tables ->> 'Message')::bigint FROM pgrunbook.snapshots ORDER BY id LIMIT 1"
    )
    assert message_bytes == scalar(db, "SELECT pg_total_relation_size('\"Message\"')")


def test_the_statement_is_one_parameterless_insert() -> None:
    text = snapshot_statement("public", "monthly", "pg_cron").as_string()
    assert text.startswith("INSERT INTO pgrunbook.snapshots")
    assert ";" not in text and "%" not in text
