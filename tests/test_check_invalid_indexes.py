"""invalid_indexes: a failed CREATE INDEX CONCURRENTLY, a build in progress, a clean database."""

from __future__ import annotations

import threading
import time

import psycopg

from pgrunbook.discover import discover
from pgrunbook.dsn import ConnInfo
from pgrunbook.findings import Severity
from tests.support import (
    ROLE_PASSWORD,
    execute,
    leave_failed_reindex_copy,
    leave_failed_unique_build,
    rows,
    scalar,
)

ONLY = ("invalid_indexes",)


def test_failed_unique_build_is_a_leftover_to_drop_and_recreate(empty_db: ConnInfo) -> None:
    leave_failed_unique_build(empty_db)

    [finding] = discover(empty_db, only=ONLY).by_check("invalid_indexes")

    drop = 'DROP INDEX CONCURRENTLY IF EXISTS "public"."account_email_key";'
    recreate = (
        "CREATE UNIQUE INDEX CONCURRENTLY account_email_key ON public.account USING btree (email);"
    )
    assert finding.severity is Severity.WARNING
    assert finding.object == "public.account_email_key"
    assert finding.fix == f"{drop}\n{recreate}"
    assert finding.details["state"] == "invalid"
    assert finding.details["definition"] == (
        "CREATE UNIQUE INDEX account_email_key ON public.account USING btree (email)"
    )
    assert finding.details["drop_sql"] == drop
    assert finding.details["recreate_sql"] == recreate
    assert finding.details["bytes"] == scalar(
        empty_db, "SELECT pg_relation_size('account_email_key')"
    )
    assert "duplicate values" in finding.message

    # The fix works once the duplicates are gone, and the finding goes away.
    execute(empty_db, "DELETE FROM account WHERE id = 2")
    for statement in finding.fix.splitlines():
        execute(empty_db, statement)
    assert (
        scalar(
            empty_db,
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'account_email_key'::regclass",
        )
        is True
    )
    assert discover(empty_db, only=ONLY).by_check("invalid_indexes") == []


def test_invalid_copy_of_a_valid_index_is_only_dropped(empty_db: ConnInfo) -> None:
    leave_failed_reindex_copy(empty_db)

    [finding] = discover(empty_db, only=ONLY).by_check("invalid_indexes")

    assert finding.severity is Severity.WARNING
    assert finding.object == "public.event_norm_idx_ccnew"
    assert finding.details["valid_twin"] == "public.event_norm_idx"
    assert finding.fix == 'DROP INDEX CONCURRENTLY IF EXISTS "public"."event_norm_idx_ccnew";'


def test_partitioned_index_missing_on_a_partition(empty_db: ConnInfo) -> None:
    execute(
        empty_db,
        "CREATE TABLE reading (at int) PARTITION BY RANGE (at);"
        "CREATE TABLE reading_1 PARTITION OF reading FOR VALUES FROM (0) TO (10);"
        "CREATE INDEX reading_at_idx ON ONLY reading (at);",
    )
    [finding] = discover(empty_db, only=ONLY).by_check("invalid_indexes")

    assert finding.severity is Severity.WARNING
    assert finding.object == "public.reading_at_idx"
    assert finding.details["state"] == "partitions_missing"
    assert finding.fix is None


def _wait_for_build(info: ConnInfo, index: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = rows(
            info,
            "SELECT 1 FROM pg_stat_progress_create_index p JOIN pg_class c ON c.oid = p.index_relid"
            " WHERE c.relname = %s",
            (index,),
        )
        if found:
            return
        time.sleep(0.02)
    raise AssertionError(f"CREATE INDEX CONCURRENTLY {index} never showed up in progress")


def test_build_in_progress_is_info_without_fix(empty_db: ConnInfo, login_role: str) -> None:
    execute(
        empty_db,
        "CREATE TABLE ledger (id int PRIMARY KEY, amount int);"
        "INSERT INTO ledger SELECT g, g FROM generate_series(1, 100) g;",
    )
    failures: list[BaseException] = []

    def build() -> None:
        try:
            with psycopg.connect(empty_db.conninfo(), autocommit=True) as conn:
                conn.execute("CREATE INDEX CONCURRENTLY ledger_amount_idx ON ledger (amount)")
        except psycopg.Error as exc:  # reported by the main thread
            failures.append(exc)

    with psycopg.connect(empty_db.conninfo()) as writer:
        writer.execute("UPDATE ledger SET amount = amount WHERE id = 1")  # open transaction
        builder = threading.Thread(target=build)
        builder.start()
        try:
            _wait_for_build(empty_db, "ledger_amount_idx")
            [finding] = discover(empty_db, only=ONLY).by_check("invalid_indexes")
            # A role without pg_read_all_stats sees no oids in the progress view: the
            # build's lock on the table still tells it apart from a leftover.
            as_role = empty_db.with_params(user=login_role, password=ROLE_PASSWORD)
            [seen_by_role] = discover(as_role, only=ONLY).by_check("invalid_indexes")
        finally:
            writer.commit()
            builder.join(timeout=30)

    assert not failures
    assert finding.severity is Severity.INFO
    assert finding.object == "public.ledger_amount_idx"
    assert finding.fix is None
    assert finding.details["state"] == "build_in_progress"
    assert finding.details["command"] == "CREATE INDEX CONCURRENTLY"
    assert finding.details["phase"] == "waiting for writers before build"
    assert seen_by_role.severity is Severity.INFO
    assert seen_by_role.details["state"] == "build_in_progress"
    # Once the build finishes the index is valid and nothing is reported.
    assert discover(empty_db, only=ONLY).by_check("invalid_indexes") == []


def test_clean_database_has_no_invalid_index(db: ConnInfo) -> None:
    report = discover(db, only=ONLY)
    assert report.by_check("invalid_indexes") == []
    assert [c.status for c in report.checks] == ["ran"]
