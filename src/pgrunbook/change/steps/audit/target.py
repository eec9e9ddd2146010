"""The audit table in this database: its name and columns in this naming, whether a table
already there can serve, and the SQL other steps use to write audit rows.

The profile names the table logically (``AuditLog``). A table already in the schema under
that name in either naming (``AuditLog``, ``audit_log``, ``audit_logs``) is the audit table;
otherwise the table pgrunbook creates is spelled the database's way: ``"AuditLog"`` with
camelCase columns in a Prisma database, ``audit_logs`` with snake_case columns in a
snake_case one (whose tables are plural).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from pgrunbook.catalog import Table
from pgrunbook.change.step import StepContext
from pgrunbook.discover.checks.naming import detect
from pgrunbook.resolve import find_column, snake

ID: Final = "audit"
MAX_IDENTIFIER: Final = 63  # NAMEDATALEN - 1


@dataclass(frozen=True)
class AuditColumn:
    """One column of the audit table, by its logical (Prisma) name."""

    logical: str
    ddl: str  # the column's type and clauses in CREATE TABLE (a constant, no identifier)
    type: str  # as format_type() renders the type pgrunbook creates
    kind: str  # the family of types a table already there may use instead (see KINDS)
    # whether every writer fills it: a NOT NULL column without a default that some writer
    # leaves empty (ipAddress from a trigger) makes the table unusable
    always_written: bool = False


COLUMNS: Final[tuple[AuditColumn, ...]] = (
    AuditColumn("id", "uuid PRIMARY KEY DEFAULT gen_random_uuid()", "uuid", "uuid", True),
    AuditColumn("userId", "uuid", "uuid", "uuid"),
    AuditColumn("action", "varchar(100) NOT NULL", "character varying(100)", "text", True),
    AuditColumn("entityType", "varchar(100) NOT NULL", "character varying(100)", "text", True),
    AuditColumn("entityId", "varchar(255)", "character varying(255)", "text"),
    AuditColumn("oldValues", "jsonb", "jsonb", "json"),
    AuditColumn("newValues", "jsonb", "jsonb", "json"),
    AuditColumn("metadata", "jsonb", "jsonb", "json"),
    AuditColumn("ipAddress", "varchar(45)", "character varying(45)", "text"),
    AuditColumn("userAgent", "text", "text", "text"),
    # Prisma's DateTime: timestamp(3) without time zone holding UTC, whatever the session's
    # TimeZone; nobody writes it, the default does
    AuditColumn(
        "createdAt",
        "timestamp(3) NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')",
        "timestamp(3) without time zone",
        "timestamp",
    ),
)
COLUMN: Final = {c.logical: c for c in COLUMNS}

# Types a table already there may use for a column: audit_log()'s parameters (uuid,
# varchar, jsonb) must be assignable to them.
KINDS: Final[dict[str, tuple[str, ...]]] = {
    "uuid": ("uuid",),
    "text": ("character varying", "text"),
    "json": ("jsonb", "json"),
    "timestamp": ("timestamp",),
}

# NOT NULL columns without a default, identity or generation: an INSERT that leaves one of
# them out fails.
REQUIRED_COLUMNS_SQL: Final = """
SELECT a.attname AS name
  FROM pg_attribute a
 WHERE a.attrelid = %(oid)s AND a.attnum > 0 AND NOT a.attisdropped
   AND a.attnotnull AND NOT a.atthasdef AND a.attidentity = '' AND a.attgenerated = ''
 ORDER BY a.attnum
"""

INSERT_SQL: Final = sql.SQL("INSERT INTO {table} ({columns}) ")
# one audit row per row of ``table`` matching ``where``, holding the row as it is now
AUDIT_ROWS_SQL: Final = sql.SQL(
    "{insert}SELECT gen_random_uuid(), {action}, {entity_type}, left(to_jsonb(t) ->> 'id', 255),"
    " to_jsonb(t), {new_values}, {metadata} FROM {table} AS t WHERE {where}"
)
# the columns audit_insert_sql() names, in order
INSERT_COLUMNS: Final = ("id", "action", "entityType", "entityId", "oldValues", "newValues",
                         "metadata")  # fmt: skip


def compatible(kind: str, found: str) -> bool:
    """Whether a column of type ``found`` (format_type) can hold values of ``kind``."""
    return any(found == t or found.startswith(t + "(") or found.startswith(t + " ")
               for t in KINDS[kind])  # fmt: skip


def plural(name: str) -> str:
    """``audit_log`` -> ``audit_logs``: snake_case schemas name tables in the plural."""
    if name.endswith("s"):
        return name
    if name.endswith("y") and len(name) > 1 and name[-2] not in "aeiou":
        return name[:-1] + "ies"
    return name + "s"


@dataclass(frozen=True)
class AuditTarget:
    """The audit table as this database has (or will have) it."""

    schema: str
    name: str
    # logical -> physical for every expected column (a missing one spelled this database's
    # way, as the exported script's guard names it)
    columns: Mapping[str, str]
    table: Table | None  # the table already in the schema, if any
    missing: tuple[str, ...] = ()  # expected columns the table already there lacks

    @property
    def exists(self) -> bool:
        return self.table is not None

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def identifier(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)

    def column(self, logical: str) -> sql.Identifier:
        """A column's identifier in this naming (``"entityType"`` or ``"entity_type"``)."""
        return sql.Identifier(self.columns[logical])

    def index_name(self, suffix: str) -> str:
        """``idx_auditlog_<suffix>`` / ``idx_audit_logs_<suffix>``, at most 63 bytes."""
        room = MAX_IDENTIFIER - len(suffix.encode()) - 1
        stem = f"idx_{self.name.lower()}".encode()[:room].decode("utf-8", "ignore")
        return f"{stem}_{suffix}"


def audit_target(ctx: StepContext) -> AuditTarget:
    """The audit table: the one already in the schema, else the one pgrunbook would create."""
    logical = ctx.profile.audit.table
    convention = detect(ctx.catalog)
    spelled = {c.logical: convention.column_name(c.logical) for c in COLUMNS}
    table = ctx.table(logical)
    if table is not None:
        found = {c.logical: col.name for c in COLUMNS if (col := find_column(table, c.logical))}
        missing = tuple(c.logical for c in COLUMNS if c.logical not in found)
        return AuditTarget(ctx.schema, table.name, spelled | found, table, missing)
    name = convention.table_name(logical)
    if name != logical and name == snake(logical):
        name = plural(name)
    return AuditTarget(ctx.schema, name, spelled, None)


def problems(conn: psycopg.Connection[Any], target: AuditTarget) -> dict[str, list[str]]:
    """Why a table already there cannot serve as the audit table (empty: it can).

    ``missing``: expected columns it lacks; ``incompatible``: columns whose type cannot hold
    what pgrunbook writes (``column: type``); ``required``: NOT NULL columns without a
    default that some audit writer leaves empty.
    """
    table = target.table
    if table is None:
        return {}
    out: dict[str, list[str]] = {}
    if target.missing:
        out["missing"] = list(target.missing)
    incompatible = []
    for logical, physical in target.columns.items():
        col = table.column(physical) if logical not in target.missing else None
        if col is not None and not compatible(COLUMN[logical].kind, col.type):
            incompatible.append(f"{physical}: {col.type}")
    if incompatible:
        out["incompatible"] = incompatible
    written = {target.columns[c.logical] for c in COLUMNS if c.always_written}
    rows = conn.execute(REQUIRED_COLUMNS_SQL, {"oid": table.oid}).fetchall()
    required = [str(r[0]) for r in rows if str(r[0]) not in written]
    if required:
        out["required"] = required
    return out


def audit_table(ctx: StepContext) -> Table | None:
    """The audit table in this database, if present and usable (every expected column of a
    compatible type, nothing required that audit writers leave empty)."""
    target = audit_target(ctx)
    if target.table is None or problems(ctx.conn, target):
        return None
    return target.table


def audit_insert_sql(ctx: StepContext) -> sql.Composed:
    """``INSERT INTO <audit table> (id, action, entityType, entityId, oldValues, newValues,
    metadata) `` in this database's names; the caller adds ``VALUES``/``SELECT`` with
    ``gen_random_uuid()`` first (a table already there may have no default for ``id``)."""
    return _insert(audit_target(ctx))


def _insert(target: AuditTarget) -> sql.Composed:
    columns = sql.SQL(", ").join(target.column(c) for c in INSERT_COLUMNS)
    return INSERT_SQL.format(table=target.identifier, columns=columns)


def audit_rows_sql(
    ctx: StepContext,
    table: Table,
    where: sql.Composable,
    *,
    action: str,
    metadata: Mapping[str, Any] | None = None,
    new_values: sql.Composable | None = None,
) -> sql.Composed:
    """One audit row per row of ``table`` matching ``where`` (over alias ``t``), holding the
    row as it is now in ``oldValues``: run it just before changing those rows, in the same
    transaction. ``entityType`` is the table's name, ``entityId`` its ``id`` as text.
    ``new_values`` is a jsonb expression over ``t`` (default NULL)."""
    return AUDIT_ROWS_SQL.format(
        insert=_insert(audit_target(ctx)),
        action=sql.Literal(action),
        entity_type=sql.Literal(table.name),
        new_values=new_values if new_values is not None else sql.SQL("NULL::jsonb"),
        metadata=sql.Literal(Jsonb(dict(metadata or {}))),
        table=sql.Identifier(table.schema, table.name),
        where=where,
    )
