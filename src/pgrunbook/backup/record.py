"""``pgrunbook.backups``: every backup pgrunbook took of this database, in the database.

The safety gate asks ``latest_backup(conn)`` how old the most recent good backup is. The
table is created on first use beside ``pgrunbook.journal``; dropping the ``pgrunbook``
schema forgets it. Its rows are left out of the dumps themselves (``--exclude-table-data``):
a restored copy did not take those backups.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import psycopg

from pgrunbook import __version__
from pgrunbook.locking import timeouts
from pgrunbook.rows import fetch

# (schema, name): its data is left out of every dump (see the module docstring).
BACKUPS_TABLE: Final = ("pgrunbook", "backups")

CREATE_SQL: Final = """
CREATE SCHEMA IF NOT EXISTS pgrunbook;
CREATE TABLE IF NOT EXISTS pgrunbook.backups (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    taken_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    file text NOT NULL,
    machine text NOT NULL,
    format text NOT NULL,
    schema_only boolean NOT NULL,
    size_bytes bigint NOT NULL,
    duration_seconds double precision NOT NULL,
    tables integer NOT NULL,
    tool_version text NOT NULL,
    server_version text NOT NULL,
    verified boolean NOT NULL,
    taken_by text NOT NULL DEFAULT current_user,
    pgrunbook_version text NOT NULL
);
"""

INSERT_SQL: Final = """
INSERT INTO pgrunbook.backups
    (file, machine, format, schema_only, size_bytes, duration_seconds, tables, tool_version,
     server_version, verified, pgrunbook_version)
VALUES (%(file)s, %(machine)s, %(format)s, %(schema_only)s, %(size_bytes)s,
        %(duration_seconds)s, %(tables)s, %(tool_version)s, %(server_version)s, %(verified)s,
        %(version)s)
RETURNING id
"""

EXISTS_SQL: Final = "SELECT to_regclass('pgrunbook.backups') IS NOT NULL"

LATEST_SQL: Final = """
SELECT id, taken_at, clock_timestamp() - taken_at AS age, file, machine, format, schema_only,
       size_bytes, duration_seconds, tables, tool_version, server_version, verified, taken_by
  FROM pgrunbook.backups
 WHERE (verified OR %(unverified)s) AND (NOT schema_only OR %(schema_only)s)
 ORDER BY taken_at DESC, id DESC
 LIMIT 1
"""


@dataclass(frozen=True)
class BackupRecord:
    """What ``record_backup`` writes (the server fills in when and who)."""

    file: str
    machine: str
    format: str  # "custom" (pg_dump -Fc) or "plain" (--schema-only SQL)
    schema_only: bool
    size_bytes: int
    duration_seconds: float
    tables: int
    tool_version: str
    server_version: str
    verified: bool


@dataclass(frozen=True)
class Backup:
    """A row of ``pgrunbook.backups``; ``age`` is measured by the server's clock."""

    id: int
    taken_at: datetime
    age: timedelta
    file: str
    machine: str
    format: str
    schema_only: bool
    size_bytes: int
    duration_seconds: float
    tables: int
    tool_version: str
    server_version: str
    verified: bool
    taken_by: str


def record_backup(conn: psycopg.Connection[Any], record: BackupRecord) -> int:
    """Append a backup to ``pgrunbook.backups`` (created on first use); return its id."""
    with (
        conn.transaction(),
        timeouts(conn, lock_timeout_ms=2000, statement_timeout_ms=30_000),
    ):
        conn.execute(CREATE_SQL.encode())
        row = conn.execute(INSERT_SQL, {**asdict(record), "version": __version__}).fetchone()
    assert row is not None
    return int(row[0])


def latest_backup(
    conn: psycopg.Connection[Any],
    *,
    include_unverified: bool = False,
    include_schema_only: bool = False,
) -> Backup | None:
    """The most recent backup recorded in this database: by default a verified full one
    (a schema-only file is no way back for the data). None when there is none."""
    row = conn.execute(EXISTS_SQL).fetchone()
    if not (row and row[0]):
        return None
    found = fetch(
        conn,
        Backup,
        LATEST_SQL,
        {"unverified": include_unverified, "schema_only": include_schema_only},
    )
    return found[0] if found else None
