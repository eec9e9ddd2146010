"""Checking a backup against the database it came from.

A custom archive is verified with ``pg_restore --list``: it must read, and hold every table
pg_dump should have dumped (and its data). A plain schema file must be complete (pg_dump's
closing comment) and create every table. Row counts are the planner's estimates
(``pg_class.reltuples``): counting would read the whole database a second time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import psycopg

from pgrunbook.backup.archive import ArchiveToc
from pgrunbook.backup.record import BACKUPS_TABLE
from pgrunbook.rows import fetch

# The tables pg_dump dumps: ordinary and partitioned ones outside the system schemas that no
# extension owns. ``quoted`` is how pg_dump's plain output names them.
SOURCE_TABLES_SQL: Final = """
SELECT n.nspname AS schema, c.relname AS name, c.relkind = 'r' AS has_data,
       CASE WHEN c.reltuples < 0 THEN NULL ELSE c.reltuples::bigint END AS estimated_rows,
       quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS quoted
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p')
   AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname !~ '^pg_(toast|temp_)'
   AND NOT EXISTS (SELECT 1 FROM pg_depend d
                    WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                      AND d.deptype = 'e')
 ORDER BY 1, 2
"""

PLAIN_COMPLETE: Final = "-- PostgreSQL database dump complete"


@dataclass(frozen=True)
class SourceTable:
    schema: str
    name: str
    has_data: bool
    estimated_rows: int | None
    quoted: str


@dataclass(frozen=True)
class TableCheck:
    schema: str
    name: str
    estimated_rows: int | None
    in_backup: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "name": self.name,
            "estimated_rows": self.estimated_rows,
            "in_backup": self.in_backup,
        }


@dataclass(frozen=True)
class Verification:
    readable: bool
    tables: tuple[TableCheck, ...]
    problem: str | None = None

    @property
    def missing(self) -> list[str]:
        return [f"{t.schema}.{t.name}" for t in self.tables if not t.in_backup]

    @property
    def verified(self) -> bool:
        return self.readable and not self.missing and self.problem is None


def source_tables(conn: psycopg.Connection[Any]) -> list[SourceTable]:
    return fetch(conn, SourceTable, SOURCE_TABLES_SQL)


def verify_archive(toc: ArchiveToc, tables: list[SourceTable]) -> Verification:
    listed = set(toc.tables)
    checks = []
    for t in tables:
        key = (t.schema, t.name)
        data_ok = not t.has_data or key in toc.data or key == BACKUPS_TABLE
        checks.append(TableCheck(t.schema, t.name, t.estimated_rows, key in listed and data_ok))
    return Verification(readable=True, tables=tuple(checks))


def verify_plain(path: Path, tables: list[SourceTable]) -> Verification:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return Verification(False, (), f"cannot read {path}: {exc.strerror or exc}")
    problem = None if PLAIN_COMPLETE in text else "the file lacks pg_dump's closing line"
    checks = tuple(
        TableCheck(t.schema, t.name, t.estimated_rows, f" TABLE {t.quoted} (" in text)
        for t in tables
    )
    return Verification(True, checks, problem)
