"""Prisma mode: finding the schema in Prisma's order, and detecting Prisma from the database's
``_prisma_migrations`` table (created here with the schema engine's own DDL)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import psycopg
import pytest

from pgrunbook.dsn import ConnInfo
from pgrunbook.errors import ConfigError
from pgrunbook.prisma.mode import PrismaMode, detect, find_schema
from pgrunbook.reference import ALI_SCHEMA, Naming
from pgrunbook.reference.write import project_dir
from tests.support import execute

# prisma-engines, schema-engine/connectors/sql-schema-connector/src/flavour/postgres.rs,
# create_migrations_table(): unqualified, so it lands in the connection's search_path schema.
PRISMA_MIGRATIONS_DDL = """
CREATE TABLE _prisma_migrations (
    id                      VARCHAR(36) PRIMARY KEY NOT NULL,
    checksum                VARCHAR(64) NOT NULL,
    finished_at             TIMESTAMPTZ,
    migration_name          VARCHAR(255) NOT NULL,
    logs                    TEXT,
    rolled_back_at          TIMESTAMPTZ,
    started_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    applied_steps_count     INTEGER NOT NULL DEFAULT 0
);
"""
SMALL = 'datasource db {\n  provider = "postgresql"\n}\n\nmodel A {\n  id Int @id\n}\n'


def _write(path: Path, text: str = SMALL) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_prisma_order_of_places(tmp_path: Path) -> None:
    assert find_schema(tmp_path, None) == (
        None,
        "no Prisma schema (looked for prisma/schema.prisma, schema.prisma, prisma/schema/)",
    )
    folder = tmp_path / "prisma" / "schema"
    _write(folder / "models.prisma")
    assert find_schema(tmp_path, None) == (folder, "default location prisma/schema/")
    root = _write(tmp_path / "schema.prisma")
    assert find_schema(tmp_path, None) == (root, "default location schema.prisma")
    default = _write(tmp_path / "prisma" / "schema.prisma")
    assert find_schema(tmp_path, None) == (default, "default location prisma/schema.prisma")
    (tmp_path / "package.json").write_text(json.dumps({"name": "app", "dependencies": {}}))
    assert find_schema(tmp_path, None)[0] == default  # no "prisma" key: not a setting
    config = _write(tmp_path / "db" / "config.prisma")
    (tmp_path / "prisma.config.ts").write_text(
        'import { defineConfig } from "prisma/config";\n\nexport default defineConfig({\n'
        '  schema: "db/config.prisma",\n  migrations: { path: "db/migrations" },\n});\n'
    )
    assert find_schema(tmp_path, None) == (config, "prisma.config.ts schema")
    custom = _write(tmp_path / "db" / "custom.prisma")
    (tmp_path / "package.json").write_text(json.dumps({"prisma": {"schema": "db/custom.prisma"}}))
    assert find_schema(tmp_path, None) == (custom, "package.json prisma.schema")
    explicit = _write(tmp_path / "other" / "x.prisma")
    assert find_schema(tmp_path, Path("other/x.prisma")) == (explicit, "--prisma-schema")
    assert find_schema(Path("/"), explicit) == (explicit, "--prisma-schema")


def test_a_missing_explicit_path_is_a_one_line_error(tmp_path: Path) -> None:
    _write(tmp_path / "prisma" / "schema.prisma")  # a default exists, but was not asked for
    with pytest.raises(ConfigError) as err:
        find_schema(tmp_path, Path("nope/schema.prisma"))
    assert str(err.value) == (
        "--prisma-schema nope/schema.prisma: no such file or folder; pass the path of "
        "schema.prisma or of the folder holding the .prisma files"
    )


def test_package_json_pointing_nowhere_or_broken(tmp_path: Path) -> None:
    package = tmp_path / "package.json"
    package.write_text(json.dumps({"prisma": {"schema": "db/schema.prisma"}}))
    with pytest.raises(ConfigError) as err:
        find_schema(tmp_path, None)
    assert str(err.value) == f"{package}: prisma.schema is 'db/schema.prisma', which does not exist"
    package.write_text('{"prisma": ')
    with pytest.raises(ConfigError) as err:
        find_schema(tmp_path, None)
    assert str(err.value).startswith(f"{package}: cannot read it: Expecting value")


def test_off_without_table_or_schema(tmp_path: Path, empty_db: ConnInfo) -> None:
    with psycopg.connect(empty_db.conninfo(), autocommit=True) as conn:
        mode = detect(conn, "public", tmp_path)
    assert mode == PrismaMode(False, (), None, None, None, False)
    assert mode.to_json() == {
        "on": False,
        "reasons": [],
        "schema_path": None,
        "schema_files": [],
        "migrations_dir": None,
        "migrations_table": False,
        "relation_mode": None,
        "preview_features": [],
        "models": 0,
    }


def test_on_from_the_migrations_table_in_the_datasource_schema(
    tmp_path: Path, empty_db: ConnInfo
) -> None:
    execute(empty_db, "CREATE SCHEMA app; SET search_path = app;" + PRISMA_MIGRATIONS_DDL)
    (tmp_path / "prisma" / "migrations").mkdir(parents=True)
    with psycopg.connect(empty_db.conninfo(), autocommit=True) as conn:
        elsewhere = detect(conn, "public", tmp_path)
        mode = detect(conn, "app", tmp_path)
    assert (elsewhere.on, elsewhere.migrations_table) == (False, False)
    assert mode.on and mode.migrations_table
    assert mode.reasons == ("the database has app._prisma_migrations",)
    assert (mode.schema_path, mode.schema) == (None, None)
    # no schema file, but Prisma's default migrations folder is there
    assert mode.migrations_dir == tmp_path / "prisma" / "migrations"


@pytest.mark.parametrize("naming", list(Naming))
def test_on_from_the_reference_project(tmp_path: Path, naming: Naming) -> None:
    shutil.copytree(project_dir(naming), tmp_path / "prisma")
    mode = detect(None, "public", tmp_path)
    schema_path = tmp_path / "prisma" / "schema.prisma"
    assert mode.on and not mode.migrations_table
    assert mode.reasons == (f"Prisma schema {schema_path} (default location prisma/schema.prisma)",)
    assert mode.schema_path == schema_path
    assert mode.schema is not None
    assert [m.db_name for m in mode.schema.models] == [
        naming.table(t.name) for t in ALI_SCHEMA.tables
    ]
    assert mode.migrations_dir == tmp_path / "prisma" / "migrations"
    assert mode.migrations_dir.is_dir()
    data = mode.to_json()
    assert data["schema_files"] == [str(schema_path)]
    assert (data["relation_mode"], data["models"]) == ("foreignKeys", len(ALI_SCHEMA.tables))


def test_both_reasons_and_a_folder_schema(tmp_path: Path, empty_db: ConnInfo) -> None:
    execute(empty_db, PRISMA_MIGRATIONS_DDL)
    folder = tmp_path / "prisma" / "schema"
    _write(folder / "models" / "a.prisma", "model A {\n  id Int @id\n}\n")
    _write(
        folder / "schema.prisma",
        'generator client {\n  provider = "prisma-client-js"\n'
        '  previewFeatures = ["partialIndexes"]\n}\n'
        'datasource db {\n  provider = "postgresql"\n  relationMode = "prisma"\n}\n',
    )
    with psycopg.connect(empty_db.conninfo(), autocommit=True) as conn:
        mode = detect(conn, "public", tmp_path)
    assert mode.reasons == (
        "the database has public._prisma_migrations",
        f"Prisma schema {folder} (default location prisma/schema/)",
    )
    # Prisma keeps the migrations beside the file with the datasource block
    assert mode.migrations_dir == folder / "migrations"
    data = mode.to_json()
    assert data["schema_files"] == [
        str(folder / "models" / "a.prisma"),
        str(folder / "schema.prisma"),
    ]
    assert (data["relation_mode"], data["preview_features"]) == ("prisma", ["partialIndexes"])


def test_a_broken_schema_is_reported_not_ignored(tmp_path: Path) -> None:
    _write(tmp_path / "prisma" / "schema.prisma", "model A {\n  id Int @id\n")
    with pytest.raises(ConfigError) as err:
        detect(None, "public", tmp_path)
    assert str(err.value) == (
        f"{tmp_path / 'prisma' / 'schema.prisma'}:1: block `model A` is never closed (missing `}}`)"
    )
