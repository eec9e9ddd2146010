"""References to the objects the steps create, and their fingerprints (for drift).

After an operation completes the journal stores a fingerprint of the object it made: a hash
of its definition as the server renders it (``pg_get_indexdef``, ``pg_get_triggerdef``,
``pg_get_constraintdef`` plus whether it is validated, ``pg_get_functiondef``, a table's
columns, a role's login flag). ``status`` computes it again: a different fingerprint, or no
object at all, means someone changed or dropped it outside pgrunbook.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final

import psycopg


class RefKind(Enum):
    INDEX = "index"
    CONSTRAINT = "constraint"
    TRIGGER = "trigger"
    FUNCTION = "function"
    TABLE = "table"
    ROLE = "role"


# Each returns one text row (the definition) or no row (the object does not exist).
INDEX_SQL: Final = """
SELECT pg_get_indexdef(i.indexrelid) || CASE WHEN i.indisvalid THEN '' ELSE ' INVALID' END
  FROM pg_index i
  JOIN pg_class c ON c.oid = i.indexrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = %(schema)s AND c.relname = %(name)s
"""

CONSTRAINT_SQL: Final = """
SELECT pg_get_constraintdef(con.oid) || CASE WHEN con.convalidated THEN '' ELSE ' NOT VALID' END
  FROM pg_constraint con
  JOIN pg_class c ON c.oid = con.conrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = %(schema)s AND c.relname = %(table)s AND con.conname = %(name)s
"""

TRIGGER_SQL: Final = """
SELECT pg_get_triggerdef(t.oid) || ' ' || t.tgenabled::text
  FROM pg_trigger t
  JOIN pg_class c ON c.oid = t.tgrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = %(schema)s AND c.relname = %(table)s AND t.tgname = %(name)s
   AND NOT t.tgisinternal
"""

# every overload of the name, in a stable order
FUNCTION_SQL: Final = """
SELECT string_agg(pg_get_functiondef(p.oid), E'\n'
                  ORDER BY pg_get_function_identity_arguments(p.oid))
  FROM pg_proc p
  JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = %(schema)s AND p.proname = %(name)s
HAVING count(*) > 0
"""

TABLE_SQL: Final = """
SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                  || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END, ', '
                  ORDER BY a.attnum)
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
 WHERE n.nspname = %(schema)s AND c.relname = %(name)s AND c.relkind IN ('r', 'p')
HAVING count(*) > 0
"""

ROLE_SQL: Final = """
SELECT rolname || CASE WHEN rolcanlogin THEN ' LOGIN' ELSE ' NOLOGIN' END
  FROM pg_roles WHERE rolname = %(name)s
"""

_SQL: Final = {
    RefKind.INDEX: INDEX_SQL,
    RefKind.CONSTRAINT: CONSTRAINT_SQL,
    RefKind.TRIGGER: TRIGGER_SQL,
    RefKind.FUNCTION: FUNCTION_SQL,
    RefKind.TABLE: TABLE_SQL,
    RefKind.ROLE: ROLE_SQL,
}


@dataclass(frozen=True)
class ObjectRef:
    """An object by name: ``schema`` is empty for roles, ``table`` is set for the objects
    that live on a table (constraints, triggers)."""

    kind: RefKind
    name: str
    schema: str = ""
    table: str = ""

    def to_record(self) -> dict[str, str]:
        return {"kind": self.kind.value, "name": self.name, "schema": self.schema,
                "table": self.table}  # fmt: skip

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> ObjectRef:
        return cls(RefKind(data["kind"]), data["name"], data.get("schema", ""),
                   data.get("table", ""))  # fmt: skip

    def definition(self, conn: psycopg.Connection[Any]) -> str | None:
        """The object's definition as the server renders it; None when it does not exist."""
        params = {"schema": self.schema, "name": self.name, "table": self.table}
        row = conn.execute(_SQL[self.kind], params).fetchone()
        return None if row is None or row[0] is None else str(row[0])

    def fingerprint(self, conn: psycopg.Connection[Any]) -> str | None:
        definition = self.definition(conn)
        if definition is None:
            return None
        return hashlib.sha256(definition.encode()).hexdigest()[:16]

    def exists(self, conn: psycopg.Connection[Any]) -> bool:
        return self.definition(conn) is not None
