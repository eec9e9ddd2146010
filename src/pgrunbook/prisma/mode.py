"""Prisma mode: on when the database has Prisma's ``_prisma_migrations`` table or a Prisma
schema is found; finds the schema the way the Prisma CLI does.

The Prisma CLI looks for the schema at the ``--schema`` flag, then ``package.json``'s
``"prisma": {"schema": ...}`` (``prisma.config.ts``'s ``schema`` in Prisma 7), then
``./prisma/schema.prisma``, ``./schema.prisma`` and the ``./prisma/schema`` folder
(https://www.prisma.io/docs/orm/prisma-schema/overview/location). Its migrations live in
``migrations/`` beside the schema file (beside the file holding the ``datasource`` block in a
multi-file schema).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import psycopg

from pgrunbook.errors import ConfigError
from pgrunbook.prisma.model import PrismaSchema
from pgrunbook.prisma.parse import read_schema

# Prisma's schema engine creates the table unqualified, so it lives in the schema of the
# connection's search path: the datasource URL's ``?schema=`` (default public).
HAS_MIGRATIONS_TABLE: Final = """
SELECT EXISTS (
    SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = %(schema)s AND c.relname = '_prisma_migrations'
      AND c.relkind IN ('r', 'p')
)
"""
# prisma.config.ts is TypeScript: only a string literal ``schema: "..."`` is understood.
_CONFIG_SCHEMA: Final = re.compile(r"""^\s*schema\s*:\s*(["'])([^"'\n]+)\1""", re.MULTILINE)


@dataclass(frozen=True)
class PrismaMode:
    on: bool
    reasons: tuple[str, ...]  # why it is on; empty when off
    schema_path: Path | None  # the schema file or folder
    schema: PrismaSchema | None
    migrations_dir: Path | None  # where Prisma keeps (or will keep) its migrations
    migrations_table: bool  # the database has _prisma_migrations

    def to_json(self) -> dict[str, Any]:
        schema = self.schema
        return {
            "on": self.on,
            "reasons": list(self.reasons),
            "schema_path": str(self.schema_path) if self.schema_path else None,
            "schema_files": [str(p) for p in schema.files] if schema else [],
            "migrations_dir": str(self.migrations_dir) if self.migrations_dir else None,
            "migrations_table": self.migrations_table,
            "relation_mode": schema.relation_mode if schema else None,
            "preview_features": list(schema.preview_features) if schema else [],
            "models": len(schema.models) if schema else 0,
        }


def _package_json(cwd: Path) -> Path | None:
    """``package.json``'s ``prisma.schema``, resolved against the working directory."""
    package = cwd / "package.json"
    if not package.is_file():
        return None
    try:
        data = json.loads(package.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{package}: cannot read it: {exc}") from exc
    prisma = data.get("prisma") if isinstance(data, dict) else None
    schema = prisma.get("schema") if isinstance(prisma, dict) else None
    if not isinstance(schema, str) or not schema:
        return None
    path = cwd / schema
    if not path.exists():
        raise ConfigError(f"{package}: prisma.schema is {schema!r}, which does not exist")
    return path


def _prisma_config(cwd: Path) -> Path | None:
    for name in ("prisma.config.ts", "prisma.config.mts", "prisma.config.js"):
        config = cwd / name
        if not config.is_file():
            continue
        try:
            found = _CONFIG_SCHEMA.search(config.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            return None
        if found and (cwd / found.group(2)).exists():
            return cwd / found.group(2)
    return None


def find_schema(cwd: Path, explicit: Path | None) -> tuple[Path | None, str]:
    """The Prisma schema (a file or a folder) and how it was found, Prisma's order."""
    if explicit is not None:
        path = explicit if explicit.is_absolute() else cwd / explicit
        if not path.exists():
            raise ConfigError(
                f"--prisma-schema {explicit}: no such file or folder",
                "pass the path of schema.prisma or of the folder holding the .prisma files",
            )
        return path, "--prisma-schema"
    found = _package_json(cwd)
    if found is not None:
        return found, "package.json prisma.schema"
    found = _prisma_config(cwd)
    if found is not None:
        return found, "prisma.config.ts schema"
    for default in ("prisma/schema.prisma", "schema.prisma"):
        if (cwd / default).is_file():
            return cwd / default, f"default location {default}"
    folder = cwd / "prisma" / "schema"
    if folder.is_dir() and any(folder.rglob("*.prisma")):
        return folder, "default location prisma/schema/"
    return None, "no Prisma schema (looked for prisma/schema.prisma, schema.prisma, prisma/schema/)"


def migrations_dir(schema_path: Path, schema: PrismaSchema) -> Path:
    """``migrations/`` beside the schema file; for a folder, beside the file that holds the
    datasource block (else the folder's own ``migrations/``)."""
    if schema_path.is_file():
        return schema_path.parent / "migrations"
    span = schema.datasource.span if schema.datasource else None
    home = span.path.parent if span is not None and span.path is not None else schema_path
    return home / "migrations"


@dataclass(frozen=True)
class PrismaProject:
    """A Prisma project on disk: its schema, read, and its migrations folder."""

    schema_path: Path
    schema: PrismaSchema
    migrations_dir: Path


def find_project(cwd: Path, explicit: Path | None = None) -> PrismaProject | None:
    """The project whose schema ``find_schema`` finds, read; None when there is none."""
    path, _ = find_schema(cwd, explicit)
    if path is None:
        return None
    schema = read_schema(path)
    return PrismaProject(path, schema, migrations_dir(path, schema))


def has_migrations_table(conn: psycopg.Connection[Any], schema_name: str) -> bool:
    row = conn.execute(HAS_MIGRATIONS_TABLE, {"schema": schema_name}).fetchone()
    return bool(row and row[0])


def detect(
    conn: psycopg.Connection[Any] | None,
    schema_name: str,
    cwd: Path,
    explicit: Path | None = None,
) -> PrismaMode:
    """Whether Prisma mode is on, and why. A schema that does not parse raises ConfigError."""
    table = conn is not None and has_migrations_table(conn, schema_name)
    path, how = find_schema(cwd, explicit)
    reasons: list[str] = []
    if table:
        reasons.append(f"the database has {schema_name}._prisma_migrations")
    schema = read_schema(path) if path is not None else None
    migrations: Path | None = None
    if path is not None and schema is not None:
        reasons.append(f"Prisma schema {path} ({how})")
        migrations = migrations_dir(path, schema)
    elif (cwd / "prisma" / "migrations").is_dir():
        migrations = cwd / "prisma" / "migrations"
    return PrismaMode(
        on=bool(reasons),
        reasons=tuple(reasons),
        schema_path=path,
        schema=schema,
        migrations_dir=migrations,
        migrations_table=table,
    )
