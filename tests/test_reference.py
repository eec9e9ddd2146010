"""The reference schema: committed files are current, and both load paths agree."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from psycopg import sql

from pgrunbook.dsn import ConnInfo
from pgrunbook.reference import ALI_SCHEMA, Naming
from pgrunbook.reference.render_sql import migration_sql
from pgrunbook.reference.write import rendered_files
from tests.support import Template, execute, rows

CATALOG = """
SELECT 'column', c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
       || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
       || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE n.nspname = 'public' AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'index', pg_get_indexdef(i.indexrelid) FROM pg_index i
JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public'
UNION ALL
SELECT 'constraint', conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid)
FROM pg_constraint WHERE connamespace = 'public'::regnamespace
UNION ALL
SELECT 'enum', t.typname || ' ' || string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)
FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid
WHERE t.typnamespace = 'public'::regnamespace GROUP BY t.typname
ORDER BY 1, 2
"""


@pytest.mark.parametrize("naming", list(Naming))
def test_committed_files_are_current(naming: Naming) -> None:
    for path, text in rendered_files(naming).items():
        assert path.read_text() == text, f"{path} is stale: python -m pgrunbook.reference.write"


@pytest.mark.parametrize("naming", list(Naming))
def test_migration_sql_builds_the_same_schema_as_the_seed(
    naming: Naming,
    make_db: Callable[..., ConnInfo],
    templates: dict[Naming, Template],
) -> None:
    migrated = make_db()
    execute(migrated, migration_sql(ALI_SCHEMA, naming))
    seeded = make_db(templates[naming].name)
    assert rows(migrated, CATALOG) == rows(seeded, CATALOG)


def test_prisma_naming_in_the_catalog(db: ConnInfo) -> None:
    tables = {r[0] for r in rows(db, "SELECT tablename FROM pg_tables WHERE schemaname='public'")}
    assert tables == {t.name for t in ALI_SCHEMA.tables}
    columns = rows(
        db,
        "SELECT column_name, data_type, datetime_precision FROM information_schema.columns "
        "WHERE table_name = 'Message' ORDER BY ordinal_position",
    )
    assert columns[:3] == [
        ("id", "uuid", None),
        ("roomId", "uuid", None),
        ("senderId", "uuid", None),
    ]
    assert ("createdAt", "timestamp without time zone", 3) in columns
    names = {r[0] for r in rows(db, "SELECT conname FROM pg_constraint WHERE contype IN ('p','f')")}
    assert {"User_pkey", "Message_senderId_fkey", "RoomMember_roomId_fkey"} <= names


def test_snake_naming_in_the_catalog(snake_db: ConnInfo) -> None:
    tables = {
        r[0] for r in rows(snake_db, "SELECT tablename FROM pg_tables WHERE schemaname='public'")
    }
    assert tables == {Naming.SNAKE.table(t.name) for t in ALI_SCHEMA.tables}
    assert "room_members" in tables and "users" in tables
    cols = {
        r[0]
        for r in rows(
            snake_db,
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'messages'",
        )
    }
    assert {"room_id", "sender_id", "is_deleted", "created_at", "updated_at"} <= cols
    names = {r[0] for r in rows(snake_db, "SELECT indexname FROM pg_indexes")}
    assert {"users_email_key", "messages_room_id_idx", "room_members_room_id_user_id_key"} <= names


@pytest.mark.parametrize(
    ("table", "column"),
    [("Message", "roomId"), ("GiftSend", "roomId"), ("Notification", "userId")],
)
def test_logical_relations_have_no_foreign_key(db: ConnInfo, table: str, column: str) -> None:
    found = rows(
        db,
        sql.SQL(
            "SELECT count(*) FROM pg_constraint c JOIN pg_attribute a "
            "ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey) "
            "WHERE c.contype = 'f' AND c.conrelid = {}::regclass AND a.attname = {}"
        ).format(sql.Literal(f'"{table}"'), sql.Literal(column)),
    )
    assert found == [(0,)]
