"""duplicate_indexes: exact duplicates, btree prefixes, constraints kept, look-alikes left."""

from __future__ import annotations

from pgrunbook.discover import discover
from pgrunbook.dsn import ConnInfo
from pgrunbook.findings import Finding, Severity
from tests.support import execute

ONLY = ("duplicate_indexes",)


def _found(info: ConnInfo) -> dict[str, Finding]:
    return {f.object: f for f in discover(info, only=ONLY).by_check("duplicate_indexes")}


def test_exact_duplicate_drops_the_newer_one(empty_db: ConnInfo) -> None:
    execute(
        empty_db,
        "CREATE TABLE post (id int PRIMARY KEY, room int, body text);"
        "CREATE INDEX post_room_idx ON post (room);"
        "CREATE INDEX post_room_copy ON post USING btree (room ASC);",
    )
    [finding] = _found(empty_db).values()

    drop = 'DROP INDEX CONCURRENTLY IF EXISTS "public"."post_room_copy";'
    assert finding.severity is Severity.WARNING
    assert finding.object == "public.post_room_copy"
    assert finding.fix == drop
    assert finding.details["kind"] == "duplicate"
    assert finding.details["keep"] == {
        "name": "public.post_room_idx",
        "definition": "CREATE INDEX post_room_idx ON public.post USING btree (room)",
    }
    assert finding.details["drop_sql"] == drop
    assert finding.details["recreate_sql"] == (
        "CREATE INDEX CONCURRENTLY post_room_copy ON public.post USING btree (room);"
    )
    assert finding.details["bytes"] == 8192


def test_prefix_of_a_longer_btree_index_is_redundant(empty_db: ConnInfo) -> None:
    execute(
        empty_db,
        "CREATE TABLE post (id int PRIMARY KEY, room int, author int, at timestamptz);"
        "CREATE INDEX post_room_idx ON post (room);"
        "CREATE INDEX post_room_author_idx ON post (room, author);"
        "CREATE INDEX post_room_author_at_idx ON post (room, author, at);"
        "CREATE INDEX post_author_idx ON post (author);",  # not a leading prefix
    )
    found = _found(empty_db)

    assert sorted(found) == ["public.post_room_author_idx", "public.post_room_idx"]
    for finding in found.values():
        assert finding.severity is Severity.WARNING
        assert finding.details["kind"] == "prefix"
        # the index kept is one that stays, not another redundant one
        assert finding.details["keep"]["name"] == "public.post_room_author_at_idx"
    assert found["public.post_room_idx"].fix == (
        'DROP INDEX CONCURRENTLY IF EXISTS "public"."post_room_idx";'
    )


def test_exact_duplicate_keeps_the_generated_name_over_an_older_scanned_twin(
    empty_db: ConnInfo,
) -> None:
    """Scan counts between twins are the planner's coin toss; the generated name wins."""
    execute(
        empty_db,
        "CREATE TABLE post (id int PRIMARY KEY, room int);"
        "INSERT INTO post SELECT g, g % 10 FROM generate_series(1, 100) g;"
        "CREATE INDEX post_room_legacy ON post (room);"  # the older twin (lower oid) ...
        "SET enable_seqscan = off; SELECT count(*) FROM post WHERE room = 3;"  # ... scanned
        "CREATE INDEX post_room_idx ON post (room);",
    )
    [finding] = _found(empty_db).values()
    assert finding.object == "public.post_room_legacy"
    assert finding.details["keep"]["name"] == "public.post_room_idx"


def test_constraint_backed_index_is_never_dropped(empty_db: ConnInfo) -> None:
    execute(
        empty_db,
        "CREATE TABLE member (id int, email text, code text, room int, seat int);"
        # older plain index vs a newer unique constraint on the same column
        "CREATE INDEX member_email_idx ON member (email);"
        "ALTER TABLE member ADD CONSTRAINT member_email_key UNIQUE (email);"
        # a primary key and a unique constraint on the same column: both enforce
        "ALTER TABLE member ADD CONSTRAINT member_pkey PRIMARY KEY (id);"
        "ALTER TABLE member ADD CONSTRAINT member_id_key UNIQUE (id);"
        # a unique index is not redundant with a longer index that leads with it
        "CREATE UNIQUE INDEX member_room_key ON member (room);"
        "CREATE INDEX member_room_seat_idx ON member (room, seat);",
    )
    found = _found(empty_db)

    assert sorted(found) == ["public.member_email_idx", "public.member_id_key"]
    email = found["public.member_email_idx"]
    assert email.severity is Severity.WARNING
    assert email.details["keep"]["name"] == "public.member_email_key"
    assert email.fix == 'DROP INDEX CONCURRENTLY IF EXISTS "public"."member_email_idx";'
    both = found["public.member_id_key"]
    assert both.severity is Severity.INFO
    assert both.fix is None
    assert both.details["drop_sql"] is None
    assert both.details["keep"]["name"] == "public.member_pkey"


def test_look_alikes_are_not_flagged(empty_db: ConnInfo) -> None:
    execute(
        empty_db,
        "CREATE TABLE doc (id int PRIMARY KEY, slug text, room int, at int, n int);"
        # different predicate
        "CREATE INDEX doc_room_idx ON doc (room);"
        "CREATE INDEX doc_room_live_idx ON doc (room) WHERE at IS NULL;"
        # different operator class
        "CREATE INDEX doc_slug_idx ON doc (slug);"
        "CREATE INDEX doc_slug_pattern_idx ON doc (slug text_pattern_ops);"
        # different sort order, alone and as a prefix
        "CREATE INDEX doc_at_idx ON doc (at);"
        "CREATE INDEX doc_at_desc_idx ON doc (at DESC);"
        "CREATE INDEX doc_n_idx ON doc (n);"
        "CREATE INDEX doc_n_desc_room_idx ON doc (n DESC, room);"
        # different access method
        "CREATE INDEX doc_id_hash_idx ON doc USING hash (id);"
        # different collation
        'CREATE INDEX doc_slug_c_idx ON doc (slug COLLATE "C");',
    )
    assert _found(empty_db) == {}


def test_partitioned_duplicates_are_reported_once_without_a_concurrent_drop(
    empty_db: ConnInfo,
) -> None:
    execute(
        empty_db,
        "CREATE TABLE reading (at int, v int) PARTITION BY RANGE (at);"
        "CREATE TABLE reading_1 PARTITION OF reading FOR VALUES FROM (0) TO (10);"
        "CREATE INDEX reading_v_idx ON reading (v);"
        "CREATE INDEX reading_v_copy ON reading (v);",
    )
    [finding] = _found(empty_db).values()  # not once more for each partition

    assert finding.severity is Severity.WARNING
    assert finding.object == "public.reading_v_copy"
    assert finding.fix is None  # DROP INDEX CONCURRENTLY refuses a partitioned index
    assert finding.details["drop_sql"] is None


def test_seed_duplicate_only(db: ConnInfo, snake_db: ConnInfo) -> None:
    for info, drop, keep in (
        (db, "Message_roomId_legacy_idx", "Message_roomId_idx"),
        (snake_db, "messages_room_id_legacy_idx", "messages_room_id_idx"),
    ):
        [finding] = discover(info, only=ONLY).by_check("duplicate_indexes")
        assert finding.severity is Severity.WARNING
        assert finding.object == f"public.{drop}"
        assert finding.details["kind"] == "duplicate"
        assert finding.details["keep"]["name"] == f"public.{keep}"
        assert finding.fix is not None and drop in finding.fix
