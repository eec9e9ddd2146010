"""The runbook's 15 indexes in the built-in profile: the runbook's names, and each one
renders to a buildable index on the reference schema in both namings."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from pgrunbook.catalog import load_catalog
from pgrunbook.dsn import ConnInfo
from pgrunbook.errors import ConfigError
from pgrunbook.profile import load_profile
from pgrunbook.profile.load import parse_profile
from pgrunbook.profile.model import RenderedIndex
from pgrunbook.resolve import find_table
from tests.support import RUNBOOK_INDEXES, rows


def test_the_profile_has_the_runbooks_fifteen_indexes() -> None:
    assert [i.name for i in load_profile().indexes] == RUNBOOK_INDEXES


@pytest.mark.parametrize("fixture", ["db", "snake_db"])
def test_every_index_builds_on_the_reference_schema(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    info: ConnInfo = request.getfixturevalue(fixture)
    with psycopg.connect(info.conninfo(), autocommit=True) as conn:
        catalog = load_catalog(conn, "public")
        for spec in load_profile().indexes:
            table = find_table(catalog, spec.table)
            assert table is not None, spec.table
            rendered = spec.render(table)
            assert isinstance(rendered, RenderedIndex), (spec.name, rendered)
            statement = sql.SQL("CREATE INDEX {} ON {} {}").format(
                sql.Identifier(spec.name),
                sql.Identifier(table.schema, table.name),
                rendered.columns,
            )
            if rendered.predicate is not None:
                statement += sql.SQL(" WHERE {}").format(rendered.predicate)
            conn.execute(statement)
    built = rows(
        info,
        "SELECT indexrelid::regclass::text FROM pg_index WHERE indisvalid "
        "AND starts_with(indexrelid::regclass::text, 'idx_') ORDER BY 1",
    )
    assert [r[0] for r in built] == sorted(RUNBOOK_INDEXES)
    [partial] = rows(info, "SELECT pg_get_indexdef('idx_message_room_active'::regclass)")
    predicate = '("isDeleted" = false)' if fixture == "db" else "(is_deleted = false)"
    assert str(partial[0]).endswith(f"WHERE {predicate}")


def test_the_first_predicate_whose_columns_exist_wins(db: ConnInfo) -> None:
    profile = parse_profile(
        '[[indexes]]\nname = "idx_t"\ntable = "Message"\ncolumns = ["roomId"]\n'
        'where = ["{deletedAt} IS NULL", "{isDeleted} = false"]\n',
        "test",
    )
    with psycopg.connect(db.conninfo()) as conn:
        table = find_table(load_catalog(conn, "public"), "Message")
    assert table is not None
    rendered = profile.indexes[0].render(table)
    assert isinstance(rendered, RenderedIndex) and rendered.predicate is not None
    assert rendered.predicate.as_string() == '"isDeleted" = false'
    missing = parse_profile(
        '[[indexes]]\nname = "idx_t"\ntable = "Message"\ncolumns = ["roomId", "nope DESC"]\n',
        "test",
    ).indexes[0]
    assert missing.render(table) == "column 'nope' not found in public.Message"


@pytest.mark.parametrize(
    ("entry", "error"),
    [
        ('name = "i"\ntable = "T"\n', "i needs columns"),
        ('name = "i"\ntable = "T"\ncolumns = ["a SIDEWAYS"]\n', "not a column with an optional"),
        ('name = "i"\ntable = "T"\ncolumns = ["a"]\nwhere = 3\n', "where must be"),
        (f'name = "{"x" * 64}"\ntable = "T"\ncolumns = ["a"]\n', "at most 63 bytes"),
        ('name = "i"\ntable = "T"\ncolumns = ["a"]\nunique = true\n', "unknown key 'unique'"),
    ],
)
def test_a_broken_index_entry_is_one_line(entry: str, error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        parse_profile("[[indexes]]\n" + entry, "test")
