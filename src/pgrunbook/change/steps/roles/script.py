"""``export``: ``05_security_permissions.sql`` and its rollback, for psql.

Rendered from the same definitions as ``plan`` (``spec.role_grants``, ``Grant``,
``DefaultGrant``), with the schema-wide ``ON ALL TABLES IN SCHEMA`` forms. Idempotent: a
role is created only when missing (``\\gexec`` of a ``format()``ed ``CREATE ROLE``), and
GRANT, REVOKE and ALTER DEFAULT PRIVILEGES change nothing the second time.
"""

from __future__ import annotations

import re
from typing import Final

from psycopg import sql

from pgrunbook import __version__
from pgrunbook.change.runner import ApplyPolicy
from pgrunbook.change.step import Script, StepContext
from pgrunbook.change.steps.roles.spec import (
    ROLE_ATTRIBUTES,
    SEQUENCE_ALL,
    DefaultGrant,
    Grant,
    Objects,
    RoleGrants,
    drop_role,
    grantee,
    on_all,
    on_schema,
    role_grants,
    table_all,
)

LOCK_TIMEOUT_MS: Final = ApplyPolicy.lock_timeout_ms
_NOT_VARIABLE: Final = re.compile(r"[^A-Za-z0-9_]")

# Where PUBLIC may create in the schema (the default before PostgreSQL 15).
PUBLIC_CREATE_SQL: Final = sql.SQL(
    "SELECT {revoke}\n"
    " WHERE EXISTS (SELECT 1 FROM pg_namespace n, aclexplode(coalesce(n.nspacl,\n"
    "                      acldefault('n', n.nspowner))) a\n"
    "                WHERE n.nspname = {schema} AND a.grantee = 0\n"
    "                  AND a.privilege_type = 'CREATE') \\gexec"
)

CREATE_ROLE_SQL: Final = sql.SQL(
    "\\if :{{?{var}}}\n"
    "\\else\n"
    "\\set {var} ''\n"
    "\\endif\n"
    "SELECT CASE WHEN :'{var}' = ''\n"
    "            THEN format('DO $pgrunbook$ BEGIN RAISE EXCEPTION %L; END $pgrunbook$',\n"
    "                        {missing})\n"
    "            ELSE format({create}, {role}, :'{var}')\n"
    "       END\n"
    " WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {role}) \\gexec"
)

CONNECT_SQL: Final = sql.SQL(
    "SELECT format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), {role})\n"
    " WHERE NOT has_database_privilege({role}, current_database(), 'CONNECT') \\gexec"
)

# The runbook's section 6 for one role, guarded so the script can run twice.
ROLLBACK_ROLE_SQL: Final = sql.SQL(
    "DO $pgrunbook$\n"
    "BEGIN\n"
    "    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {name}) THEN\n"
    "{statements}\n"
    "        EXECUTE format('REVOKE CONNECT ON DATABASE %I FROM %I', current_database(), {name});\n"
    "    END IF;\n"
    "END $pgrunbook$;"
)


def password_variable(role: str) -> str:
    """The psql variable holding ``role``'s password: ``app_user_password``."""
    return _NOT_VARIABLE.sub("_", role) + "_password"


def _full(privileges: tuple[str, ...], everything: tuple[str, ...]) -> tuple[str, ...]:
    """``ALL`` when the role gets every privilege (portable across server versions)."""
    return ("ALL",) if set(privileges) == set(everything) else privileges


def _create_role(role: str) -> str:
    var = password_variable(role)
    return CREATE_ROLE_SQL.format(
        var=sql.SQL(var),
        role=sql.Literal(role),
        missing=sql.Literal(f"role {role} does not exist: run psql with -v {var}=PASSWORD"),
        create=sql.Literal("CREATE ROLE %I " + ROLE_ATTRIBUTES + " PASSWORD %L"),
    ).as_string()


def _grants(schema: str, wanted: RoleGrants, version_num: int) -> list[str]:
    to = grantee(wanted.role)
    tables = _full(wanted.tables, table_all(version_num))
    sequences = _full(wanted.sequences, SEQUENCE_ALL)
    defaults: tuple[tuple[Objects, tuple[str, ...]], ...] = (
        ("TABLES", tables),
        ("SEQUENCES", sequences),
    )
    out = [
        f"-- {wanted.role}: {wanted.summary}",
        CONNECT_SQL.format(role=sql.Literal(wanted.role)).as_string(),
        Grant(wanted.schema, on_schema(schema), to).grant() + ";",
        Grant(tables, on_all("TABLES", schema), to).grant() + ";",
        Grant(sequences, on_all("SEQUENCES", schema), to).grant() + ";",
    ]
    out += [DefaultGrant(p, objects, schema, wanted.role).grant() + ";" for objects, p in defaults]
    return out


def _header(title: str, lines: list[str]) -> list[str]:
    return [f"-- {title} (pgrunbook {__version__}, runbook script 05)"] + [
        f"-- {line}" if line else "--" for line in lines
    ]


def forward(ctx: StepContext) -> str:
    schema = ctx.schema
    wanted = role_grants(ctx.profile.roles, ctx.server.version_num)
    variables = " ".join(f"-v {password_variable(w.role)}=PASSWORD" for w in wanted)
    out = _header(
        "05_security_permissions.sql: the application roles and their privileges",
        [
            f"Schema {schema}. Roles: "
            + "; ".join(f"{w.role} ({w.summary})" for w in wanted)
            + ".",
            "Run it as the database owner, a role with CREATEROLE (on Neon the project owner):",
            f"  psql -v ON_ERROR_STOP=1 {variables} -f 05_security_permissions.sql",
            "A password is needed only for a role that does not exist yet (the script stops",
            "with an error naming the variable otherwise); existing roles are not changed.",
            "Use long random passwords (openssl rand -base64 32). They travel in the CREATE",
            "ROLE statements; 'pgrunbook apply roles' sends only SCRAM verifiers instead.",
            "The default privileges cover tables and sequences that the role running this",
            "script creates later (run migrations as that role).",
            f"Sets lock_timeout = {LOCK_TIMEOUT_MS}ms: a GRANT on a table takes ACCESS SHARE,",
            "which waits only behind an ACCESS EXCLUSIVE lock and never blocks the app.",
            "Idempotent: a second run changes nothing.",
        ],
    )
    out += ["", f"SET lock_timeout = '{LOCK_TIMEOUT_MS}ms';", ""]
    for w in wanted:
        out += [_create_role(w.role), ""]
    revoke = Grant(("CREATE",), on_schema(schema), grantee(None)).revoke()
    out += [
        "-- PUBLIC may not create objects here (it may before PostgreSQL 15): no DDL for the",
        "-- app roles",
        PUBLIC_CREATE_SQL.format(
            revoke=sql.Literal(revoke), schema=sql.Literal(schema)
        ).as_string(),
        "",
    ]
    for w in wanted:
        out += [*_grants(schema, w, ctx.server.version_num), ""]
    return "\n".join(out)


def rollback(ctx: StepContext) -> str:
    schema = ctx.schema
    wanted = role_grants(ctx.profile.roles, ctx.server.version_num)
    out = _header(
        "rollback_05_security_permissions.sql: undo 05_security_permissions.sql",
        [
            f"The runbook's section 6 in schema {schema}: revoke everything the roles hold",
            "there (and their default privileges, and CONNECT), then drop them. Unlike",
            "'pgrunbook rollback roles' it cannot tell what a role held before: a role that",
            "existed before loses those privileges too, and is dropped.",
            f"It does not give PUBLIC back CREATE on schema {schema}; if you need it:",
            f"  GRANT CREATE ON SCHEMA {schema} TO PUBLIC;",
            "  psql -v ON_ERROR_STOP=1 -f rollback_05_security_permissions.sql",
            f"Sets lock_timeout = {LOCK_TIMEOUT_MS}ms. Idempotent.",
        ],
    )
    out += ["", f"SET lock_timeout = '{LOCK_TIMEOUT_MS}ms';", ""]
    for w in wanted:
        to = grantee(w.role)
        statements = [
            DefaultGrant(("ALL",), "TABLES", schema, w.role).revoke(),
            DefaultGrant(("ALL",), "SEQUENCES", schema, w.role).revoke(),
            Grant(("ALL",), on_all("TABLES", schema), to).revoke(),
            Grant(("ALL",), on_all("SEQUENCES", schema), to).revoke(),
            Grant(("ALL",), on_schema(schema), to).revoke(),
        ]
        body = sql.SQL("\n").join(sql.SQL(f"        {s};") for s in statements)
        block = ROLLBACK_ROLE_SQL.format(name=sql.Literal(w.role), statements=body)
        out += [block.as_string(), ""]
    out += [drop_role(w.role) + ";" for w in wanted]
    return "\n".join(out) + "\n"


def export(ctx: StepContext) -> Script:
    return Script(forward(ctx) + "\n", rollback(ctx))
