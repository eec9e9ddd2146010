"""missing_indexes: foreign keys and inferred relations with no index leading with them."""

from __future__ import annotations

from pgrunbook.discover import discover
from pgrunbook.dsn import ConnInfo
from pgrunbook.findings import Finding, Severity
from pgrunbook.reference import Naming
from tests.support import Template, execute, scalar

ONLY = ("missing_indexes",)


def _found(info: ConnInfo) -> list[Finding]:
    return discover(info, only=ONLY).by_check("missing_indexes")


def test_foreign_key_without_index(empty_db: ConnInfo) -> None:
    execute(
        empty_db,
        "CREATE TABLE team (id int PRIMARY KEY);"
        "CREATE TABLE player (id int PRIMARY KEY, team_id int REFERENCES team);"
        "INSERT INTO team SELECT g FROM generate_series(1, 10) g;"
        "INSERT INTO player SELECT g, g % 10 + 1 FROM generate_series(1, 1500) g;"
        "ANALYZE team, player;",
    )
    [finding] = _found(empty_db)

    fix = (
        'CREATE INDEX CONCURRENTLY IF NOT EXISTS "player_team_id_idx" ON "public"."player" '
        '("team_id");'
    )
    assert finding.severity is Severity.WARNING  # 1,500 rows >= min_rows (1,000)
    assert finding.object == "public.player"
    assert finding.fix == fix
    assert finding.details == {
        "columns": ["team_id"],
        "parent": "public.team",
        "parent_columns": ["id"],
        "source": "foreign_key",
        "constraint": "player_team_id_fkey",
        "estimated_rows": 1500,
        "index_name": "player_team_id_idx",
    }
    # The fix is the index the check looks for.
    execute(empty_db, fix)
    assert _found(empty_db) == []


def test_composite_key_in_any_order_but_not_partial(empty_db: ConnInfo) -> None:
    execute(
        empty_db,
        "CREATE TABLE slot (day int, room int, PRIMARY KEY (day, room));"
        # covered: the index leads with (room, day), the key's columns in another order
        "CREATE TABLE booking (id int PRIMARY KEY, day int, room int, who text,"
        " FOREIGN KEY (day, room) REFERENCES slot);"
        "CREATE INDEX booking_room_day_who_idx ON booking (room, day, who);"
        # not covered: the key's columns are not both leading
        "CREATE TABLE visit (id int PRIMARY KEY, day int, room int, who text,"
        " FOREIGN KEY (day, room) REFERENCES slot);"
        "CREATE INDEX visit_day_who_room_idx ON visit (day, who, room);"
        # not covered: only a partial index
        "CREATE TABLE hold (id int PRIMARY KEY, day int, room int,"
        " FOREIGN KEY (day, room) REFERENCES slot);"
        "CREATE INDEX hold_day_room_idx ON hold (day, room) WHERE room > 0;",
    )
    found = {f.object: f for f in _found(empty_db)}

    assert sorted(found) == ["public.hold", "public.visit"]
    hold = found["public.hold"]
    assert hold.severity is Severity.INFO  # an empty table
    assert hold.details["columns"] == ["day", "room"]
    assert hold.details["index_name"] == "hold_day_room_idx1"  # the partial one has the name
    assert hold.fix == (
        'CREATE INDEX CONCURRENTLY IF NOT EXISTS "hold_day_room_idx1" ON "public"."hold" '
        '("day", "room");'
    )


def test_inferred_relation_without_index(empty_db: ConnInfo) -> None:
    execute(
        empty_db,
        'CREATE TABLE "Room" (id uuid PRIMARY KEY);'
        'CREATE TABLE "Message" (id uuid PRIMARY KEY, "roomId" uuid, "senderId" text);',
    )
    [finding] = _found(empty_db)  # senderId: no table "Sender"

    assert finding.severity is Severity.INFO
    assert finding.object == "public.Message"
    assert finding.details["source"] == "inferred"
    assert finding.details["constraint"] is None
    assert finding.details["parent"] == "public.Room"
    assert finding.fix == (
        'CREATE INDEX CONCURRENTLY IF NOT EXISTS "Message_roomId_idx" ON "public"."Message" '
        '("roomId");'
    )


def test_long_names_fit_and_the_fix_clears_the_finding(empty_db: ConnInfo) -> None:
    table = "subscription_renewal_attempt_history_" + "x" * 20
    execute(
        empty_db,
        "CREATE TABLE customer (id int PRIMARY KEY);"
        f'CREATE TABLE "{table}" (id int PRIMARY KEY, customer_id int REFERENCES customer);',
    )
    [finding] = _found(empty_db)
    name = finding.details["index_name"]
    assert len(name.encode()) <= 63 and name.endswith("_idx") and name.startswith(table[:30])
    assert finding.fix is not None
    execute(empty_db, finding.fix)
    assert scalar(empty_db, "SELECT count(*) FROM pg_class WHERE relname = %s", (name,)) == 1
    assert _found(empty_db) == []


def test_clean_schema_has_no_finding(empty_db: ConnInfo) -> None:
    execute(
        empty_db,
        "CREATE TABLE team (id int PRIMARY KEY);"
        "CREATE TABLE player (id int PRIMARY KEY, team_id int REFERENCES team);"
        "CREATE INDEX player_team_id_idx ON player (team_id);"
        "CREATE TABLE coach (id int PRIMARY KEY, team_id int UNIQUE REFERENCES team);"
        "CREATE TABLE fan (id int PRIMARY KEY, team_id int);"  # inferred, hash-indexed
        "CREATE INDEX fan_team_id_idx ON fan USING hash (team_id);",
    )
    assert _found(empty_db) == []


def _manifest(template: Template) -> set[tuple[str, str]]:
    """The seed's unindexed relations as (table.column, source)."""
    out = set()
    for entry in template.report.anomalies["foreign_keys_without_index"]:
        name, _, note = entry.partition(" ")
        out.add((name, "inferred" if "logical" in note else "foreign_key"))
    return out


def _relation(finding: Finding) -> str:
    return f"{finding.object.removeprefix('public.')}.{finding.details['columns'][0]}"


def test_seeded_database_reports_the_seed_relations(
    db: ConnInfo, snake_db: ConnInfo, templates: dict[Naming, Template]
) -> None:
    for naming, info in ((Naming.PRISMA, db), (Naming.SNAKE, snake_db)):
        reported = _found(info)
        findings = {(_relation(f), f.details["source"]): f for f in reported}
        # Report.messageId names Message and has its key's type, with no foreign key and no
        # index: an inferred relation the seed's manifest does not list (the model declares
        # no relation for it), reported at info level on the seed's 20 reports.
        extra = (f"{naming.table('Report')}.{naming.column('messageId')}", "inferred")
        assert set(findings) == _manifest(templates[naming]) | {extra}
        assert len(reported) == 11
        assert findings[extra].severity is Severity.INFO
        sender = (f"{naming.table('Message')}.{naming.column('senderId')}", "foreign_key")
        assert findings[sender].severity is Severity.WARNING  # 10,000 messages
