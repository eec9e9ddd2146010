"""What each application role gets: the one definition ``plan``, ``verify`` and ``export``
render, and the statements that grant it and undo it exactly.

Privilege keywords come only from the constants here (never from the database or the user),
so they are composed as SQL keywords; every name is a ``sql.Identifier``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from psycopg import sql

from pgrunbook.profile.model import RolesSpec

ID: Final = "roles"
MASK: Final = "********"  # what a shown, journaled or exported CREATE ROLE has as password
PASSWORD_BYTES: Final = 32  # secrets.token_urlsafe(32): 256 bits (at least 128 required)
PASSWORD_ALGORITHM: Final = b"scram-sha-256"
JOURNAL_SCHEMA: Final = "pgrunbook"

# The attributes every application role is created with (never a cluster administrator).
ROLE_ATTRIBUTES: Final = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION"

SCHEMA_ALL: Final = ("USAGE", "CREATE")
TABLE_ALL_BEFORE_17: Final = (
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "TRUNCATE",
    "REFERENCES",
    "TRIGGER",
)
MAINTAIN_SINCE: Final = 170000  # PostgreSQL 17 added the MAINTAIN table privilege
SEQUENCE_ALL: Final = ("USAGE", "SELECT", "UPDATE")
# the relkinds GRANT ... ON ALL TABLES IN SCHEMA covers, and sequences
TABLE_KINDS: Final = ("r", "p", "v", "m", "f")
SEQUENCE_KIND: Final = "S"

Kind = Literal["user", "readonly", "admin"]
Objects = Literal["TABLES", "SEQUENCES"]
# pg_default_acl.defaclobjtype of each kind of object default privileges are given for
DEFAULT_OBJTYPE: Final[dict[Objects, str]] = {"TABLES": "r", "SEQUENCES": "S"}


def table_all(version_num: int) -> tuple[str, ...]:
    """Every table privilege this server knows (what ``GRANT ALL`` means on it)."""
    return TABLE_ALL_BEFORE_17 + (("MAINTAIN",) if version_num >= MAINTAIN_SINCE else ())


@dataclass(frozen=True)
class RoleGrants:
    """One application role and exactly what it gets on the schema."""

    role: str
    kind: Kind
    summary: str
    env_name: str  # its line in the .env file
    schema: tuple[str, ...]
    tables: tuple[str, ...]
    sequences: tuple[str, ...]


def role_grants(roles: RolesSpec, version_num: int) -> tuple[RoleGrants, ...]:
    """The three roles in creation order: app_user, app_readonly, app_admin."""
    return (
        RoleGrants(
            roles.user,
            "user",
            "reads and writes data and uses sequences, no DDL",
            "DATABASE_URL",
            ("USAGE",),
            ("SELECT", "INSERT", "UPDATE", "DELETE"),
            ("USAGE", "SELECT"),
        ),
        RoleGrants(
            roles.readonly,
            "readonly",
            "reads only",
            "APP_READONLY_DATABASE_URL",
            ("USAGE",),
            ("SELECT",),
            ("SELECT",),
        ),
        RoleGrants(
            roles.admin,
            "admin",
            "everything on the schema, DDL included",
            "APP_ADMIN_DATABASE_URL",
            SCHEMA_ALL,
            table_all(version_num),
            SEQUENCE_ALL,
        ),
    )


def _keywords(privileges: tuple[str, ...]) -> sql.Composable:
    return sql.SQL(", ").join(sql.SQL(p) for p in privileges)


def grantee(role: str | None) -> sql.Composable:
    """A role, or ``PUBLIC`` (None)."""
    return sql.SQL("PUBLIC") if role is None else sql.Identifier(role)


def on_schema(schema: str) -> sql.Composable:
    return sql.SQL("SCHEMA {}").format(sql.Identifier(schema))


def on_relation(kind: Literal["TABLE", "SEQUENCE"], schema: str, name: str) -> sql.Composable:
    return sql.SQL("{} {}").format(sql.SQL(kind), sql.Identifier(schema, name))


def on_all(kind: Literal["TABLES", "SEQUENCES"], schema: str) -> sql.Composable:
    return sql.SQL("ALL {} IN SCHEMA {}").format(sql.SQL(kind), sql.Identifier(schema))


def on_database(name: str) -> sql.Composable:
    return sql.SQL("DATABASE {}").format(sql.Identifier(name))


@dataclass(frozen=True, eq=False)
class Grant:
    """``GRANT privileges ON target TO grantee`` and the REVOKE of exactly that."""

    privileges: tuple[str, ...]
    target: sql.Composable
    to: sql.Composable

    def grant(self) -> str:
        return (
            sql.SQL("GRANT {} ON {} TO {}")
            .format(_keywords(self.privileges), self.target, self.to)
            .as_string()
        )

    def revoke(self) -> str:
        return (
            sql.SQL("REVOKE {} ON {} FROM {}")
            .format(_keywords(self.privileges), self.target, self.to)
            .as_string()
        )


@dataclass(frozen=True)
class DefaultGrant:
    """``ALTER DEFAULT PRIVILEGES``: what tables or sequences created later get.

    Default privileges belong to the role that creates the objects: ``creator`` names it
    (``FOR ROLE``) so the inverse undoes the same entry whoever runs it; None means the role
    running the statement (the exported script).
    """

    privileges: tuple[str, ...]
    objects: Objects
    schema: str
    role: str
    creator: str | None = None

    def _statement(self, verb: Literal["GRANT", "REVOKE"]) -> str:
        head: sql.Composable = sql.SQL("ALTER DEFAULT PRIVILEGES")
        if self.creator is not None:
            head = sql.SQL("{} FOR ROLE {}").format(head, sql.Identifier(self.creator))
        direction = sql.SQL("TO" if verb == "GRANT" else "FROM")
        return (
            sql.SQL("{} IN SCHEMA {} {} {} ON {} {} {}")
            .format(
                head,
                sql.Identifier(self.schema),
                sql.SQL(verb),
                _keywords(self.privileges),
                sql.SQL(self.objects),
                direction,
                sql.Identifier(self.role),
            )
            .as_string()
        )

    def grant(self) -> str:
        return self._statement("GRANT")

    def revoke(self) -> str:
        return self._statement("REVOKE")


def create_role(role: str, password: str) -> str:
    """``CREATE ROLE``; ``password`` is the mask (shown) or the SCRAM verifier (executed)."""
    return (
        sql.SQL("CREATE ROLE {} {} PASSWORD {}")
        .format(sql.Identifier(role), sql.SQL(ROLE_ATTRIBUTES), sql.Literal(password))
        .as_string()
    )


# Neon accepts only plaintext passwords in CREATE ROLE (its control plane keeps the role; "hashed
# passwords are not supported"). The password is then handed over as a parameter-like
# constant of a SELECT, which pg_stat_statements stores normalized (set_config($1, $2, $3)),
# and the CREATE ROLE runs nested in a DO block, which neither pg_stat_statements (track =
# top) nor log_statement records: the password is in no statistics view nor statement log.
PLAINTEXT_CREATE_SQL: Final = sql.SQL(
    "SELECT set_config({setting}, {password}, true); "
    "DO $pgrunbook$ BEGIN "
    "EXECUTE format({template}, {role}, current_setting({setting})); "
    "PERFORM set_config({setting}, '', true); "
    "END $pgrunbook$"
)
PASSWORD_SETTING: Final = "pgrunbook.new_role_password"


def create_role_plaintext(role: str, password: str) -> str:
    """``CREATE ROLE`` with a plaintext password, for Neon (see PLAINTEXT_CREATE_SQL)."""
    return PLAINTEXT_CREATE_SQL.format(
        setting=sql.Literal(PASSWORD_SETTING),
        password=sql.Literal(password),
        template=sql.Literal("CREATE ROLE %I " + ROLE_ATTRIBUTES + " PASSWORD %L"),
        role=sql.Literal(role),
    ).as_string()


def drop_role(role: str) -> str:
    return sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)).as_string()


# Revokes what a role holds on the tables and sequences of a schema, one by one: only where
# it holds something, so a table the current user may not touch (owned by another role,
# no privilege) does not fail it as REVOKE ... ON ALL TABLES IN SCHEMA would.
REVOKE_HELD_SQL: Final = sql.SQL(
    "DO $pgrunbook$\n"
    "DECLARE rel record;\n"
    "BEGIN\n"
    "    FOR rel IN\n"
    "        SELECT c.oid::regclass AS name, c.relkind = 'S' AS is_sequence\n"
    "          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace\n"
    "         WHERE n.nspname = {schema} AND EXISTS (\n"
    "                 SELECT 1 FROM aclexplode(c.relacl) a JOIN pg_roles r ON r.oid = a.grantee\n"
    "                  WHERE r.rolname = {role})\n"
    "    LOOP\n"
    "        EXECUTE format('REVOKE ALL ON %s %s FROM %I',\n"
    "                       CASE WHEN rel.is_sequence THEN 'SEQUENCE' ELSE 'TABLE' END,\n"
    "                       rel.name, {role});\n"
    "    END LOOP;\n"
    "END $pgrunbook$"
)


def undo_create_role(schema: str, role: str) -> str:
    """The inverse of creating ``role``: drop it, after revoking what it holds on the tables
    and sequences of the schema. That includes the grants tables created after apply got
    from the default privileges (DROP ROLE fails while any privilege remains); the role is
    pgrunbook's, so everything it holds goes with it."""
    revoke = REVOKE_HELD_SQL.format(schema=sql.Literal(schema), role=sql.Literal(role))
    return f"{revoke.as_string()}; {drop_role(role)}"
