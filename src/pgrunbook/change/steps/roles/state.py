"""What the catalog says about the roles and their privileges on one schema.

``plan`` reads the privileges each role holds *directly* (``aclexplode`` of the ACLs, from
any grantor): a privilege reached only through ``PUBLIC`` or a role membership can vanish
when that changes, so it is granted anyway. ``verify`` reads the *effective* privileges
(``has_table_privilege`` and friends), which is what the role can really do.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import psycopg

from pgrunbook.change.steps.roles.spec import (
    SCHEMA_ALL,
    SEQUENCE_ALL,
    SEQUENCE_KIND,
    TABLE_KINDS,
    table_all,
)
from pgrunbook.rows import fetch, fetch_one

# ``neon``: a Neon compute (its neon module defines neon.tenant_id, readable by anyone)
ME_SQL: Final = """
SELECT current_user::text AS name, rolsuper AS superuser, rolcreaterole AS createrole,
       coalesce(current_setting('neon.tenant_id', true), '') <> '' AS neon
  FROM pg_roles WHERE rolname = current_user
"""

ROLES_SQL: Final = """
SELECT rolname::text AS name, rolcanlogin AS can_login, rolsuper AS superuser,
       rolcreaterole AS createrole, rolcreatedb AS createdb, rolreplication AS replication,
       rolbypassrls AS bypassrls
  FROM pg_roles WHERE rolname = ANY(%(roles)s::text[])
"""

# The schema: who owns it, what the current user may grant on it, whether PUBLIC may create
# in it (the default before PostgreSQL 15) and whether the current user can revoke that
# (it acts as the owner: the owner, a member of the owning role, or a superuser).
SCHEMA_SQL: Final = """
SELECT pg_get_userbyid(n.nspowner)::text AS owner,
       ARRAY(SELECT p FROM unnest(%(schema_privs)s::text[]) p
              WHERE has_schema_privilege(n.oid, p || ' WITH GRANT OPTION')) AS grantable,
       EXISTS (SELECT 1 FROM aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a
                WHERE a.grantee = 0 AND a.privilege_type = 'CREATE') AS public_create,
       EXISTS (SELECT 1 FROM aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a
                WHERE a.grantee = 0 AND a.privilege_type = 'CREATE'
                  AND a.grantor <> n.nspowner) AS public_create_by_other,
       pg_has_role(n.nspowner, 'USAGE') AS acts_as_owner
  FROM pg_namespace n
 WHERE n.nspname = %(schema)s
"""

# Tables (every relkind GRANT ... ON ALL TABLES covers) and sequences of the schema, with
# the privileges the current user may grant on each. An extension's objects (the
# pg_stat_statements view, often in public) are the extension's business, not the app's.
RELATIONS_SQL: Final = """
SELECT c.relname::text AS name, c.relkind = 'S' AS is_sequence,
       pg_get_userbyid(c.relowner)::text AS owner,
       CASE WHEN c.relkind = 'S'
            THEN ARRAY(SELECT p FROM unnest(%(seq_privs)s::text[]) p
                        WHERE has_sequence_privilege(c.oid, p || ' WITH GRANT OPTION'))
            ELSE ARRAY(SELECT p FROM unnest(%(table_privs)s::text[]) p
                        WHERE has_table_privilege(c.oid, p || ' WITH GRANT OPTION'))
       END AS grantable
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = %(schema)s
   AND (c.relkind = ANY(%(table_kinds)s::"char"[]) OR c.relkind = %(seq_kind)s::"char")
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                      AND d.objid = c.oid AND d.deptype = 'e')
 ORDER BY c.relname
"""

# The privileges the roles hold directly (any grantor) on the schema and its relations.
HELD_SQL: Final = """
SELECT 'schema' AS kind, n.nspname::text AS name, r.rolname::text AS role,
       a.privilege_type AS privilege
  FROM pg_namespace n
 CROSS JOIN LATERAL aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a
  JOIN pg_roles r ON r.oid = a.grantee
 WHERE n.nspname = %(schema)s AND r.rolname = ANY(%(roles)s::text[])
UNION ALL
SELECT CASE WHEN c.relkind = 'S' THEN 'sequence' ELSE 'table' END, c.relname::text,
       r.rolname::text, a.privilege_type
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
 CROSS JOIN LATERAL aclexplode(coalesce(
           c.relacl,
           acldefault(CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END::"char", c.relowner))) a
  JOIN pg_roles r ON r.oid = a.grantee
 WHERE n.nspname = %(schema)s AND r.rolname = ANY(%(roles)s::text[])
   AND (c.relkind = ANY(%(table_kinds)s::"char"[]) OR c.relkind = %(seq_kind)s::"char")
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                      AND d.objid = c.oid AND d.deptype = 'e')
"""

# Default privileges (for tables 'r' and sequences 'S') the roles get on objects created
# later in the schema, per creating role; entries for all schemas (namespace 0) count too.
DEFAULTS_SQL: Final = """
SELECT pg_get_userbyid(d.defaclrole)::text AS creator, d.defaclobjtype::text AS objtype,
       r.rolname::text AS role, a.privilege_type AS privilege
  FROM pg_default_acl d
 CROSS JOIN LATERAL aclexplode(d.defaclacl) a
  JOIN pg_roles r ON r.oid = a.grantee
 WHERE d.defaclnamespace IN (0, (SELECT oid FROM pg_namespace WHERE nspname = %(schema)s))
   AND d.defaclobjtype IN ('r', 'S') AND r.rolname = ANY(%(roles)s::text[])
"""

# CONNECT on this database: PUBLIC has it by default; a database that revoked it needs a
# grant per role (only its owner, or a holder of the grant option, can give one).
DATABASE_SQL: Final = """
SELECT d.datname::text AS name,
       has_database_privilege(d.oid, 'CONNECT WITH GRANT OPTION') AS grantable,
       EXISTS (SELECT 1 FROM aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a
                WHERE a.grantee = 0 AND a.privilege_type = 'CONNECT') AS public_connect,
       ARRAY(SELECT r.rolname::text FROM pg_roles r
              WHERE r.rolname = ANY(%(roles)s::text[])
                AND has_database_privilege(r.oid, d.oid, 'CONNECT')) AS can_connect
  FROM pg_database d
 WHERE d.datname = current_database()
"""


@dataclass
class Me:
    name: str
    superuser: bool
    createrole: bool
    neon: bool


@dataclass
class RoleRow:
    name: str
    can_login: bool
    superuser: bool
    createrole: bool
    createdb: bool
    replication: bool
    bypassrls: bool

    def unwanted(self) -> list[str]:
        """The attributes an application role should not have (it is not one we created)."""
        flags = {
            "NOLOGIN": not self.can_login,
            "SUPERUSER": self.superuser,
            "CREATEROLE": self.createrole,
            "CREATEDB": self.createdb,
            "REPLICATION": self.replication,
            "BYPASSRLS": self.bypassrls,
        }
        return [name for name, on in flags.items() if on]


@dataclass
class SchemaRow:
    owner: str
    grantable: list[str]
    public_create: bool
    public_create_by_other: bool
    acts_as_owner: bool


@dataclass
class RelationRow:
    name: str
    is_sequence: bool
    owner: str
    grantable: list[str]


@dataclass
class HeldRow:
    kind: str  # schema, table, sequence
    name: str
    role: str
    privilege: str


@dataclass
class DefaultRow:
    creator: str
    objtype: str  # 'r' tables, 'S' sequences
    role: str
    privilege: str


@dataclass
class DatabaseRow:
    name: str
    grantable: bool
    public_connect: bool
    can_connect: list[str]


@dataclass
class State:
    me: Me
    roles: dict[str, RoleRow]
    schema: SchemaRow | None  # None: the schema does not exist
    relations: list[RelationRow]
    database: DatabaseRow
    # (kind, name, role) -> privileges held directly
    held: dict[tuple[str, str, str], set[str]] = field(default_factory=dict)
    # (creator, objtype, role) -> default privileges
    defaults: dict[tuple[str, str, str], set[str]] = field(default_factory=dict)

    def holds(self, kind: str, name: str, role: str) -> set[str]:
        return self.held.get((kind, name, role), set())


def read_defaults(
    conn: psycopg.Connection[Any], schema: str, roles: Sequence[str]
) -> dict[tuple[str, str, str], set[str]]:
    out: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for row in fetch(conn, DefaultRow, DEFAULTS_SQL, {"schema": schema, "roles": list(roles)}):
        out[(row.creator, row.objtype, row.role)].add(row.privilege)
    return dict(out)


def read_state(
    conn: psycopg.Connection[Any], schema: str, roles: Sequence[str], version_num: int
) -> State:
    """One snapshot of everything ``plan`` needs (read-only)."""
    params = {
        "schema": schema,
        "roles": list(roles),
        "schema_privs": list(SCHEMA_ALL),
        "table_privs": list(table_all(version_num)),
        "seq_privs": list(SEQUENCE_ALL),
        "table_kinds": list(TABLE_KINDS),
        "seq_kind": SEQUENCE_KIND,
    }
    schemas = fetch(conn, SchemaRow, SCHEMA_SQL, params)
    held: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for row in fetch(conn, HeldRow, HELD_SQL, params):
        held[(row.kind, row.name, row.role)].add(row.privilege)
    return State(
        me=fetch_one(conn, Me, ME_SQL),
        roles={r.name: r for r in fetch(conn, RoleRow, ROLES_SQL, params)},
        schema=schemas[0] if schemas else None,
        relations=fetch(conn, RelationRow, RELATIONS_SQL, params),
        database=fetch_one(conn, DatabaseRow, DATABASE_SQL, params),
        held=dict(held),
        defaults=read_defaults(conn, schema, roles),
    )
