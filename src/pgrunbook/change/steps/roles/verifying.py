"""``verify``: the roles exist and can log in, and their privileges are right, proven by
acting as each role where possible.

How each role is tested, best first:

1. ``login``: ``--passwords-file`` holds its password: connect as the role (the session's
   host, port and database) and run the statements it must be allowed and refused;
2. ``set role``: the current user may ``SET ROLE`` to it (superuser or member): the same
   statements after ``SET LOCAL ROLE``;
3. ``catalog``: only the catalog checks below, and the details say how to test the login.

Every statement runs in a transaction that is rolled back; the write tests touch no row
(``INSERT ... SELECT ... WHERE false`` still checks the privilege). The catalog check always
runs too: the effective privileges (``has_table_privilege`` and friends, so ``PUBLIC`` and
memberships count) on the schema and on every table and sequence must be exactly what the
role should have, and default privileges must exist for objects created later.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

import psycopg
from psycopg import errors, sql

from pgrunbook.change.step import StepContext, Verification
from pgrunbook.change.steps.roles.envfile import read_env_file
from pgrunbook.change.steps.roles.spec import (
    DEFAULT_OBJTYPE,
    ID,
    SCHEMA_ALL,
    SEQUENCE_ALL,
    SEQUENCE_KIND,
    TABLE_KINDS,
    RoleGrants,
    role_grants,
    table_all,
)
from pgrunbook.change.steps.roles.state import ROLES_SQL, RoleRow, read_defaults
from pgrunbook.connect import RetryPolicy, connect
from pgrunbook.dsn import ConnInfo, scrub
from pgrunbook.errors import ConnectError
from pgrunbook.locking import timeouts
from pgrunbook.rows import fetch

PROBE_LOCK_TIMEOUT_MS: Final = 1_000
PROBE_STATEMENT_TIMEOUT_MS: Final = 10_000
LOGIN_RETRY: Final = RetryPolicy(attempts=2, connect_timeout=10)
MAX_PROBLEMS: Final = 20
PROBE_TABLE_NAME: Final = "pgrunbook_verify_probe"
PROBE_ROLE_NAME: Final = "pgrunbook_verify_probe"

# The effective privileges of one role on the schema and on each table and sequence in it
# (not an extension's: see state.RELATIONS_SQL).
EFFECTIVE_SQL: Final = """
SELECT 'schema' AS kind, n.nspname::text AS name,
       ARRAY(SELECT p FROM unnest(%(schema_privs)s::text[]) p
              WHERE has_schema_privilege(%(role)s, n.oid, p)) AS privileges
  FROM pg_namespace n
 WHERE n.nspname = %(schema)s
UNION ALL
SELECT CASE WHEN c.relkind = 'S' THEN 'sequence' ELSE 'table' END, c.relname::text,
       CASE WHEN c.relkind = 'S'
            THEN ARRAY(SELECT p FROM unnest(%(seq_privs)s::text[]) p
                        WHERE has_sequence_privilege(%(role)s, c.oid, p))
            ELSE ARRAY(SELECT p FROM unnest(%(table_privs)s::text[]) p
                        WHERE has_table_privilege(%(role)s, c.oid, p))
       END
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = %(schema)s
   AND (c.relkind = ANY(%(table_kinds)s::"char"[]) OR c.relkind = %(seq_kind)s::"char")
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                      AND d.objid = c.oid AND d.deptype = 'e')
 ORDER BY 1, 2
"""

# A table the write tests can name a column of (not generated, not GENERATED ALWAYS).
PROBE_TARGET_SQL: Final = """
SELECT c.relname::text AS table_name, a.attname::text AS column_name
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                     AND a.attgenerated = '' AND a.attidentity <> 'a'
 WHERE n.nspname = %(schema)s AND c.relkind IN ('r', 'p')
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                      AND d.objid = c.oid AND d.deptype = 'e')
 ORDER BY c.relname, a.attnum
 LIMIT 1
"""

# Whether the current user may SET ROLE to each role ('SET' since PostgreSQL 16).
MAY_SET_ROLE_SQL: Final = """
SELECT r.rolname::text AS name, pg_has_role(r.oid, %(privilege)s) AS may
  FROM pg_roles r WHERE r.rolname = ANY(%(roles)s::text[])
"""

Method = Literal["login", "set role", "catalog"]
Statement = Literal["SELECT", "INSERT", "UPDATE", "DELETE", "CREATE TABLE", "CREATE ROLE"]

# What each kind of role must be allowed and refused.
ALLOWED: Final[dict[str, tuple[Statement, ...]]] = {
    "user": ("SELECT", "INSERT", "UPDATE", "DELETE"),
    "readonly": ("SELECT",),
    "admin": ("SELECT", "INSERT", "UPDATE", "DELETE", "CREATE TABLE"),
}
REFUSED: Final[dict[str, tuple[Statement, ...]]] = {
    "user": ("CREATE TABLE",),
    "readonly": ("INSERT", "UPDATE", "DELETE", "CREATE TABLE"),
    "admin": ("CREATE ROLE",),
}


@dataclass
class _Effective:
    kind: str
    name: str
    privileges: list[str]


@dataclass
class _Target:
    table_name: str
    column_name: str


@dataclass
class _MaySet:
    name: str
    may: bool


def _statements(schema: str, target: _Target | None) -> dict[Statement, sql.Composed]:
    out: dict[Statement, sql.Composed] = {
        "CREATE TABLE": sql.SQL("CREATE TABLE {} (id int)").format(
            sql.Identifier(schema, PROBE_TABLE_NAME)
        ),
        "CREATE ROLE": sql.SQL("CREATE ROLE {}").format(sql.Identifier(PROBE_ROLE_NAME)),
    }
    if target is None:
        return out
    table = sql.Identifier(schema, target.table_name)
    column = sql.Identifier(target.column_name)
    out["SELECT"] = sql.SQL("SELECT 1 FROM {} LIMIT 1").format(table)
    out["INSERT"] = sql.SQL("INSERT INTO {t} ({c}) SELECT {c} FROM {t} WHERE false").format(
        t=table, c=column
    )
    out["UPDATE"] = sql.SQL("UPDATE {t} SET {c} = {c} WHERE false").format(t=table, c=column)
    out["DELETE"] = sql.SQL("DELETE FROM {} WHERE false").format(table)
    return out


def _try(conn: psycopg.Connection[Any], statement: sql.Composed, set_role: str | None) -> str:
    """``allowed``, ``refused`` (InsufficientPrivilege) or ``error: ...``; always rolled back."""
    try:
        with conn.transaction(force_rollback=True):
            if set_role is not None:
                conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(set_role)))
            with timeouts(
                conn,
                lock_timeout_ms=PROBE_LOCK_TIMEOUT_MS,
                statement_timeout_ms=PROBE_STATEMENT_TIMEOUT_MS,
            ):
                conn.execute(statement)
    except errors.InsufficientPrivilege:
        return "refused"
    except psycopg.Error as exc:
        text = str(exc).strip().splitlines()
        return f"error: {text[0] if text else type(exc).__name__}"
    return "allowed"


def _probe(
    conn: psycopg.Connection[Any],
    wanted: RoleGrants,
    statements: dict[Statement, sql.Composed],
    set_role: str | None,
) -> tuple[list[dict[str, str]], list[str]]:
    results, problems = [], []
    expectations = [(s, "allowed") for s in ALLOWED[wanted.kind]]
    expectations += [(s, "refused") for s in REFUSED[wanted.kind]]
    for name, expected in expectations:
        statement = statements.get(name)
        if statement is None:
            continue  # no table to try it on
        outcome = _try(conn, statement, set_role)
        results.append(
            {"statement": statement.as_string(), "expected": expected, "outcome": outcome}
        )
        if outcome != expected:
            problems.append(f"{name} was {outcome}, expected {expected}")
    return results, problems


def _catalog_problems(
    ctx: StepContext, wanted: RoleGrants
) -> tuple[list[str], dict[str, list[str]]]:
    """What the catalog says is wrong with the role's privileges, and whose new objects its
    default privileges cover."""
    version = ctx.server.version_num
    params = {
        "schema": ctx.schema,
        "role": wanted.role,
        "schema_privs": list(SCHEMA_ALL),
        "table_privs": list(table_all(version)),
        "seq_privs": list(SEQUENCE_ALL),
        "table_kinds": list(TABLE_KINDS),
        "seq_kind": SEQUENCE_KIND,
    }
    expected = {"schema": wanted.schema, "table": wanted.tables, "sequence": wanted.sequences}
    problems: list[str] = []
    for row in fetch(ctx.conn, _Effective, EFFECTIVE_SQL, params):
        want = expected[row.kind]
        label = f"schema {row.name}" if row.kind == "schema" else f"{ctx.schema}.{row.name}"
        lacking = [p for p in want if p not in row.privileges]
        extra = [p for p in row.privileges if p not in want]
        if lacking:
            problems.append(f"lacks {', '.join(lacking)} on {label}")
        if extra:
            problems.append(f"may {', '.join(extra)} on {label}, which it should not")
    defaults = read_defaults(ctx.conn, ctx.schema, [wanted.role])
    covers: dict[str, list[str]] = {}
    for objects, privileges in (("tables", wanted.tables), ("sequences", wanted.sequences)):
        objtype = DEFAULT_OBJTYPE["TABLES" if objects == "tables" else "SEQUENCES"]
        covers[objects] = sorted(
            creator
            for (creator, kind, role), held in defaults.items()
            if kind == objtype and role == wanted.role and set(privileges) <= held
        )
        if not covers[objects]:
            problems.append(
                f"no default privileges: {objects} created later in {ctx.schema} will not "
                f"give {wanted.role} {', '.join(privileges)}"
            )
    return problems, covers


def _endpoint(ctx: StepContext) -> ConnInfo:
    """The session's host, port, database and other parameters (never its password)."""
    if ctx.info is not None:
        params = {k: v for k, v in ctx.info.params.items() if k != "password"}
        return ConnInfo(params=params, source=ctx.info.source)
    return ConnInfo(params=dict(ctx.conn.info.get_parameters()), source="the session")


def _passwords(ctx: StepContext) -> tuple[dict[str, str], str | None]:
    path = ctx.options.passwords_file
    if path is None:
        return {}, None
    try:
        return read_env_file(path, ctx.profile.roles), None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return {}, f"passwords file {path} is not readable ({reason})"


def _exists_check(wanted: RoleGrants, row: RoleRow | None) -> Verification:
    name = f"role {wanted.role} exists and can log in"
    if row is None:
        return Verification(ID, name, False, {"exists": False, "fix": "pgrunbook apply roles"})
    unwanted = row.unwanted()
    details: dict[str, Any] = {"exists": True, "can_login": row.can_login}
    if unwanted:
        details["unwanted_attributes"] = unwanted
    return Verification(ID, name, not unwanted, details)


def _privileges_check(
    ctx: StepContext,
    wanted: RoleGrants,
    password: str | None,
    may_set_role: bool,
    statements: dict[Statement, sql.Composed],
    file_note: str | None,
) -> Verification:
    problems, covers = _catalog_problems(ctx, wanted)
    details: dict[str, Any] = {"default_privileges_for": covers}
    method: Method = "catalog"
    probes: list[dict[str, str]] = []
    if password is not None:
        method = "login"
        info = _endpoint(ctx).with_params(
            user=wanted.role, password=password, application_name="pgrunbook verify"
        )
        try:
            with connect(info, autocommit=True, retry=LOGIN_RETRY) as conn:
                probes, failed = _probe(conn, wanted, statements, None)
                problems += failed
        except ConnectError as exc:
            problems.append(f"could not log in as {wanted.role}: {scrub(exc.message, password)}")
    elif may_set_role:
        method = "set role"
        probes, failed = _probe(ctx.conn, wanted, statements, wanted.role)
        problems += failed
        details["note"] = (
            "the statements ran as the role through SET ROLE; its login was not tested "
            "(pass --passwords-file FILE, the file apply wrote, to log in as it)"
        )
    else:
        details["note"] = (
            f"login was not tested and {ctx.conn.info.user} may not SET ROLE to "
            f"{wanted.role}, so only the catalog was checked; to test the login, pass "
            "--passwords-file FILE (the file apply wrote)"
        )
    if file_note is not None:
        details["passwords_file"] = file_note
    details["method"] = method
    if probes:
        details["statements"] = probes
    details["problems"] = problems[:MAX_PROBLEMS]
    if len(problems) > MAX_PROBLEMS:
        details["more_problems"] = len(problems) - MAX_PROBLEMS
    return Verification(ID, f"role {wanted.role} privileges", not problems, details)


def verify(ctx: StepContext) -> list[Verification]:
    wanted = role_grants(ctx.profile.roles, ctx.server.version_num)
    names = [w.role for w in wanted]
    rows = {r.name: r for r in fetch(ctx.conn, RoleRow, ROLES_SQL, {"roles": names})}
    passwords, file_note = _passwords(ctx)
    privilege = "SET" if ctx.server.version_num >= 160000 else "MEMBER"
    may_set = {
        r.name: r.may
        for r in fetch(
            ctx.conn, _MaySet, MAY_SET_ROLE_SQL, {"roles": names, "privilege": privilege}
        )
    }
    targets = fetch(ctx.conn, _Target, PROBE_TARGET_SQL, {"schema": ctx.schema})
    statements = _statements(ctx.schema, targets[0] if targets else None)
    checks: list[Verification] = []
    for w in wanted:
        checks.append(_exists_check(w, rows.get(w.role)))
        if w.role in rows:
            checks.append(
                _privileges_check(
                    ctx, w, passwords.get(w.role), may_set.get(w.role, False), statements, file_note
                )
            )
    return checks
