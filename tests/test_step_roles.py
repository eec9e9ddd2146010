"""Step ``roles`` (runbook script 05) on a real server: as a superuser and as a non-superuser
owner with CREATEROLE (as on Neon), both namings.

Role names are cluster-wide: every test uses its own (``app_user_<hex>``...) and drops them,
and the owner role it made, after dropping its database.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import psycopg
import pytest
from psycopg import errors, sql

from pgrunbook.change import Journal, Operation, apply_operations
from pgrunbook.change.engine import open_context
from pgrunbook.change.journal import Action
from pgrunbook.change.step import StepOptions, StepPlan, Verification
from pgrunbook.change.steps.roles import export, plan, read_env_file, verify, write_env_file
from pgrunbook.change.steps.roles.script import password_variable
from pgrunbook.dsn import ConnInfo, parse_dsn
from pgrunbook.profile import Profile, load_profile
from pgrunbook.profile.model import RolesSpec
from pgrunbook.reference import Naming
from tests.support import ROLE_PASSWORD, PgServer, Template, rows, run_psql, scalar

# Every privilege on the schema's objects, the schema, the database and the default ACLs,
# exploded (so a NULL ACL and its explicit default compare equal: after GRANT and REVOKE
# an ACL stays explicit, with the same meaning).
ACLS_SQL = """
SELECT 'relation ' || c.relname, a.grantee::regrole::text, a.grantor::regrole::text,
       a.privilege_type, a.is_grantable
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 CROSS JOIN LATERAL aclexplode(coalesce(c.relacl, acldefault(
           CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END::"char", c.relowner))) a
 WHERE n.nspname = 'public'
UNION ALL
SELECT 'schema', a.grantee::regrole::text, a.grantor::regrole::text, a.privilege_type,
       a.is_grantable
  FROM pg_namespace n, aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a
 WHERE n.nspname = 'public'
UNION ALL
SELECT 'database', a.grantee::regrole::text, a.grantor::regrole::text, a.privilege_type,
       a.is_grantable
  FROM pg_database d, aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a
 WHERE d.datname = current_database()
UNION ALL
SELECT 'default ' || d.defaclrole::regrole::text || ' ' || d.defaclobjtype::text,
       a.grantee::regrole::text, a.grantor::regrole::text, a.privilege_type, a.is_grantable
  FROM pg_default_acl d, aclexplode(d.defaclacl) a
 ORDER BY 1, 2, 3, 4
"""


@dataclass
class RolesDb:
    """A fresh seeded database, the roles' names for this test, and who runs pgrunbook."""

    server: PgServer
    admin: ConnInfo  # superuser on the database
    runner: ConnInfo  # the role pgrunbook runs as (the superuser, or the CREATEROLE owner)
    roles: RolesSpec
    naming: Naming

    @property
    def profile(self) -> Profile:
        return replace(load_profile(), roles=self.roles)

    def table(self, logical: str) -> str:
        return self.naming.table(logical)

    def acls(self) -> list[tuple[object, ...]]:
        return rows(self.admin, ACLS_SQL)

    def role_names(self) -> list[object]:
        found = rows(
            self.admin,
            "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s) ORDER BY rolname",
            (list(self.roles.names()),),
        )
        return [r[0] for r in found]

    def as_role(self, role: str, password: str) -> ConnInfo:
        return self.admin.with_params(user=role, password=password)


MakeDb = Callable[..., RolesDb]


@pytest.fixture
def make_roles_db(
    pg_server: PgServer, make_db: Callable[..., ConnInfo], templates: dict[Naming, Template]
) -> Iterator[MakeDb]:
    """``make_roles_db(naming, owner=False)``; drops the databases, then every role made."""
    databases: list[str] = []
    roles: list[str] = []

    def factory(naming: Naming, *, owner: bool = False) -> RolesDb:
        info = make_db(templates[naming].name)
        databases.append(info.dbname)
        suffix = uuid.uuid4().hex[:8]
        spec = RolesSpec(f"app_user_{suffix}", f"app_readonly_{suffix}", f"app_admin_{suffix}")
        roles.extend(spec.names())
        # a standalone sequence, so the sequence grants have something to grant on
        with psycopg.connect(info.conninfo(), autocommit=True) as conn:
            conn.execute("CREATE SEQUENCE public.invoice_number")
        runner = info
        if owner:
            runner = _make_owner(pg_server, info, f"pgr_owner_{suffix}")
            roles.append(runner.user)
        return RolesDb(pg_server, info, runner, spec, naming)

    yield factory
    for name in databases:
        pg_server.drop_database(name)
    for role in roles:  # the app roles first: the owner holds ADMIN on them (PostgreSQL 16+)
        pg_server.drop_role(role)


def _make_owner(server: PgServer, info: ConnInfo, name: str) -> ConnInfo:
    """A LOGIN CREATEROLE non-superuser that owns the database and its tables and sequences,
    like Neon's ``neondb_owner`` (schema public stays owned by pg_database_owner, as there)."""
    server.create_login_role(name, ROLE_PASSWORD)
    server.execute(sql.SQL("ALTER ROLE {} CREATEROLE").format(sql.Identifier(name)))
    server.execute(
        sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
            sql.Identifier(info.dbname), sql.Identifier(name)
        )
    )
    with psycopg.connect(info.conninfo(), autocommit=True) as conn:
        relations = conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'S')"
            " AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid"
            "                  AND d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i'))"
        ).fetchall()
        for (relation,) in relations:
            conn.execute(
                sql.SQL("ALTER TABLE {} OWNER TO {}").format(
                    sql.Identifier("public", relation), sql.Identifier(name)
                )
            )
    owner = info.with_params(user=name, password=ROLE_PASSWORD)
    assert scalar(owner, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user") is False
    return owner


def _plan(db: RolesDb) -> StepPlan:
    with open_context(db.runner, db.profile) as ctx:
        return plan(ctx)


def _verify(db: RolesDb, passwords_file: Path | None = None) -> dict[str, Verification]:
    options = StepOptions(passwords_file=passwords_file)
    with open_context(db.runner, db.profile, options=options) as ctx:
        return {v.name: v for v in verify(ctx)}


def _apply(db: RolesDb, operations: list[Operation], *, action: Action = "apply") -> None:
    with psycopg.connect(db.runner.conninfo(), autocommit=True) as conn:
        journal = Journal(conn)
        journal.ensure()
        ops = operations if action == "apply" else list(reversed(operations))
        apply_operations(conn, ops, journal, action=action)


def _privilege_checks(db: RolesDb, checks: dict[str, Verification]) -> list[Verification]:
    return [checks[f"role {r} privileges"] for r in db.roles.names()]


def _write(tmp_path: Path, db: RolesDb, passwords: dict[str, str]) -> Path:
    path = tmp_path / "app.env"
    write_env_file(path, db.admin, passwords, db.roles)
    return path


def _roundtrip(db: RolesDb, tmp_path: Path, set_role_method: str) -> None:
    """plan -> apply -> secrets kept secret -> .env logs in -> verify (file, then without)
    -> the app roles can and cannot -> plan again is empty -> rollback leaves the ACLs."""
    user, readonly, admin = db.roles.names()
    tracked = "pg_stat_statements" in str(scalar(db.admin, "SHOW shared_preload_libraries"))
    if tracked:
        with psycopg.connect(db.admin.conninfo(), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    before = db.acls()

    first = _plan(db)
    assert first.refused == [] and first.skipped == []
    passwords = first.secrets
    assert sorted(passwords) == sorted(db.roles.names())
    assert all(len(pw) >= 43 for pw in passwords.values())  # token_urlsafe(32): 256 bits
    role_ops = first.operations[:3]
    assert [op.object for op in role_ops] == [f"role {r}" for r in db.roles.names()]
    for op, role in zip(role_ops, db.roles.names(), strict=True):
        assert op.sql == (
            f'CREATE ROLE "{role}" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION '
            "PASSWORD '********'"
        )
        assert op.run_sql is not None and "PASSWORD 'SCRAM-SHA-256$4096:" in op.run_sql
        assert passwords[role] not in op.run_sql
        assert op.reverse_sql is not None and op.reverse_sql.endswith(
            f'END $pgrunbook$; DROP ROLE IF EXISTS "{role}"'
        )
    objects = {op.object for op in first.operations}
    wallet = db.table("Wallet")
    assert f"grant SELECT, INSERT, UPDATE, DELETE on table public.{wallet} to {user}" in objects
    assert f"grant SELECT on table public.{wallet} to {readonly}" in objects
    assert f"grant USAGE, CREATE on schema public to {admin}" in objects
    assert f"grant USAGE, SELECT on sequence public.invoice_number to {user}" in objects
    creator = db.runner.user
    assert f"default privileges of {creator} in public: SELECT on tables to {readonly}" in objects
    assert len(objects) == len(first.operations)  # the journal keys are unique
    document = json.dumps(first.to_json()) + repr(first)
    assert not any(pw in document for pw in passwords.values())

    _apply(db, first.operations)
    journal_text = rows(db.admin, "SELECT j::text FROM pgrunbook.journal j")
    assert len(journal_text) == len(first.operations)
    statements = rows(db.admin, "SELECT query FROM pg_stat_statements") if tracked else []
    for pw in passwords.values():
        assert not any(pw in str(r[0]) for r in journal_text)
        assert not any(pw in str(r[0]) for r in statements)
    verifiers = rows(
        db.admin,
        "SELECT rolpassword FROM pg_authid WHERE rolname = ANY(%s)",
        (list(db.roles.names()),),
    )
    assert len(verifiers) == 3 and all(str(v[0]).startswith("SCRAM-SHA-256$") for v in verifiers)

    path = tmp_path / "app.env"
    path.write_text("old content\n")
    path.chmod(0o644)
    write_env_file(path, db.admin, passwords, db.roles)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text().splitlines()
    lines = dict(line.split("=", 1) for line in text if "=" in line and line[0] != "#")
    assert sorted(lines) == ["APP_ADMIN_DATABASE_URL", "APP_READONLY_DATABASE_URL", "DATABASE_URL"]
    app_url = parse_dsn(lines["DATABASE_URL"].strip('"'))
    assert scalar(app_url, "SELECT current_user") == user
    assert read_env_file(path, db.roles) == passwords

    with_login = _verify(db, path)
    assert all(v.passed for v in with_login.values()), [v.to_json() for v in with_login.values()]
    assert len(with_login) == 6
    for check in _privilege_checks(db, with_login):
        assert check.details["method"] == "login"
        assert check.details["problems"] == []
    readonly_statements = with_login[f"role {readonly} privileges"].details["statements"]
    assert [(s["statement"].split()[0], s["outcome"]) for s in readonly_statements] == [
        ("SELECT", "allowed"),
        ("INSERT", "refused"),
        ("UPDATE", "refused"),
        ("DELETE", "refused"),
        ("CREATE", "refused"),
    ]
    without = _verify(db)
    assert all(v.passed for v in without.values()), [v.to_json() for v in without.values()]
    for check in _privilege_checks(db, without):
        assert check.details["method"] == set_role_method
        if set_role_method == "catalog":
            assert "login was not tested" in check.details["note"]
            assert "--passwords-file" in check.details["note"]

    # the roles themselves: readonly cannot write, app_user cannot run DDL
    with (
        psycopg.connect(db.as_role(readonly, passwords[readonly]).conninfo()) as conn,
        pytest.raises(errors.InsufficientPrivilege),
    ):
        conn.execute(
            sql.SQL("INSERT INTO {} DEFAULT VALUES").format(sql.Identifier("public", wallet))
        )
    with psycopg.connect(db.as_role(user, passwords[user]).conninfo()) as conn:
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE public.app_user_table (id int)")
        conn.rollback()
        assert conn.execute("SELECT nextval('public.invoice_number')").fetchone() == (1,)

    # a table the runner creates later reaches the app roles through the default privileges
    with psycopg.connect(db.runner.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE TABLE public.later (id int)")
    with psycopg.connect(db.as_role(user, passwords[user]).conninfo(), autocommit=True) as conn:
        conn.execute("INSERT INTO public.later VALUES (1)")
    with psycopg.connect(db.as_role(readonly, passwords[readonly]).conninfo()) as conn:
        assert conn.execute("SELECT id FROM public.later").fetchall() == [(1,)]

    again = _plan(db)
    assert again.operations == [] and again.secrets == {}
    assert f"role {user} (exists; pgrunbook never changes its password or attributes)" in (
        again.present
    )

    _apply(db, first.operations, action="rollback")  # DROP ROLE works despite public.later
    assert db.role_names() == []
    with psycopg.connect(db.admin.conninfo(), autocommit=True) as conn:
        conn.execute("DROP TABLE public.later")
    assert db.acls() == before


def test_roundtrip_as_superuser(make_roles_db: MakeDb, tmp_path: Path) -> None:
    _roundtrip(make_roles_db(Naming.PRISMA), tmp_path, "set role")


def test_roundtrip_as_createrole_owner(make_roles_db: MakeDb, tmp_path: Path) -> None:
    # the owner may not SET ROLE to the roles it creates (PostgreSQL 16+ grants it ADMIN
    # only), so without the passwords file verify can only read the catalog
    _roundtrip(make_roles_db(Naming.SNAKE, owner=True), tmp_path, "catalog")


def test_on_neon_the_password_is_plain_text_but_in_no_statistics(
    make_roles_db: MakeDb, tmp_path: Path
) -> None:
    """Neon refuses hashed passwords: there the password is sent in plain text, as a SELECT
    constant (pg_stat_statements stores it normalized) read by a nested CREATE ROLE."""
    db = make_roles_db(Naming.PRISMA, owner=True)
    tracked = "pg_stat_statements" in str(scalar(db.admin, "SHOW shared_preload_libraries"))
    with psycopg.connect(db.admin.conninfo(), autocommit=True) as conn:
        if tracked:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        # what Neon's module defines on its computes
        conn.execute(
            sql.SQL("ALTER DATABASE {} SET neon.tenant_id = 'b2c1f0e4'").format(
                sql.Identifier(db.admin.dbname)
            )
        )
    first = _plan(db)
    for op, role in zip(first.operations[:3], db.roles.names(), strict=True):
        assert op.sql.endswith("PASSWORD '********'")
        assert op.run_sql is not None
        assert op.run_sql.startswith(
            f"SELECT set_config('pgrunbook.new_role_password', '{first.secrets[role]}', true); DO "
        )
        assert "sent in plain text, as Neon requires" in op.why
    _apply(db, first.operations)
    texts = [str(r[0]) for r in rows(db.admin, "SELECT j::text FROM pgrunbook.journal j")]
    if tracked:
        texts += [str(r[0]) for r in rows(db.admin, "SELECT query FROM pg_stat_statements")]
        assert "SELECT set_config($1, $2, $3)" in texts
    for pw in first.secrets.values():
        assert not any(pw in text for text in texts)
    verifiers = rows(
        db.admin,
        "SELECT rolpassword FROM pg_authid WHERE rolname = ANY(%s)",
        (list(db.roles.names()),),
    )
    assert len(verifiers) == 3 and all(str(v[0]).startswith("SCRAM-SHA-256$") for v in verifiers)
    checks = _verify(db, _write(tmp_path, db, first.secrets))
    assert all(v.passed for v in checks.values()), [v.to_json() for v in checks.values()]
    _apply(db, first.operations, action="rollback")
    assert db.role_names() == []


def test_wrong_password_in_the_file_fails_verify(make_roles_db: MakeDb, tmp_path: Path) -> None:
    db = make_roles_db(Naming.PRISMA)
    first = _plan(db)
    _apply(db, first.operations)
    wrong = {**first.secrets, db.roles.readonly: "not-the-password-at-all"}
    checks = _verify(db, _write(tmp_path, db, wrong))
    failed = [name for name, v in checks.items() if not v.passed]
    assert failed == [f"role {db.roles.readonly} privileges"]
    [problem] = checks[failed[0]].details["problems"]
    assert problem.startswith(f"could not log in as {db.roles.readonly}: cannot connect to ")
    assert problem.endswith(f"password authentication failed for user '{db.roles.readonly}'")
    assert "not-the-password-at-all" not in json.dumps(checks[failed[0]].to_json())


def test_unreadable_passwords_file_falls_back(make_roles_db: MakeDb, tmp_path: Path) -> None:
    db = make_roles_db(Naming.PRISMA)
    _apply(db, _plan(db).operations)
    checks = _verify(db, tmp_path / "missing.env")
    assert all(v.passed for v in checks.values())
    for check in _privilege_checks(db, checks):
        assert check.details["method"] == "set role"
        assert "is not readable" in check.details["passwords_file"]


def test_public_create_on_the_schema_is_revoked_and_restored(make_roles_db: MakeDb) -> None:
    db = make_roles_db(Naming.PRISMA, owner=True)
    with psycopg.connect(db.admin.conninfo(), autocommit=True) as conn:
        conn.execute("GRANT CREATE ON SCHEMA public TO PUBLIC")  # PostgreSQL 14's default
    before = db.acls()
    first = _plan(db)
    [revoke] = [op for op in first.operations if "PUBLIC" in op.object]
    assert revoke.object == "revoke CREATE on schema public from PUBLIC"
    assert revoke.sql == 'REVOKE CREATE ON SCHEMA "public" FROM PUBLIC'
    assert revoke.reverse_sql == 'GRANT CREATE ON SCHEMA "public" TO PUBLIC'
    assert revoke.why.startswith("PUBLIC may create objects in schema public")
    assert db.roles.user in revoke.why
    _apply(db, first.operations)
    user = db.roles.user
    with (
        psycopg.connect(db.as_role(user, first.secrets[user]).conninfo()) as conn,
        pytest.raises(errors.InsufficientPrivilege),
    ):
        conn.execute("CREATE TABLE public.ddl_by_app (id int)")
    assert all(v.passed for v in _verify(db).values())

    # PUBLIC given CREATE again: verify catches that app_user can run DDL
    with psycopg.connect(db.admin.conninfo(), autocommit=True) as conn:
        conn.execute("GRANT CREATE ON SCHEMA public TO PUBLIC")
    checks = _verify(db)
    bad = checks[f"role {user} privileges"]
    assert not bad.passed
    assert bad.details["problems"] == ["may CREATE on schema public, which it should not"]
    with psycopg.connect(db.admin.conninfo(), autocommit=True) as conn:
        conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")

    _apply(db, first.operations, action="rollback")
    assert db.role_names() == []
    assert db.acls() == before  # PUBLIC may create again, as before


def test_existing_role_keeps_its_earlier_privileges(make_roles_db: MakeDb) -> None:
    db = make_roles_db(Naming.PRISMA)
    readonly = db.roles.readonly
    user_table, wallet = db.table("User"), db.table("Wallet")
    db.server.create_login_role(readonly, ROLE_PASSWORD)
    with psycopg.connect(db.admin.conninfo(), autocommit=True) as conn:
        for privilege, table in (("SELECT", user_table), ("INSERT", wallet)):
            conn.execute(
                sql.SQL("GRANT {} ON {} TO {}").format(
                    sql.SQL(privilege), sql.Identifier("public", table), sql.Identifier(readonly)
                )
            )
    before = db.acls()
    first = _plan(db)
    assert sorted(first.secrets) == sorted([db.roles.user, db.roles.admin])
    assert f"role {readonly}" not in {op.object for op in first.operations}
    assert f"SELECT on table public.{user_table} to {readonly}" in first.present
    assert f"grant SELECT on table public.{wallet} to {readonly}" in {
        op.object for op in first.operations
    }
    _apply(db, first.operations)

    # its extra INSERT is caught by verify (pgrunbook never takes privileges away)
    checks = _verify(db)
    bad = checks[f"role {readonly} privileges"]
    assert not bad.passed
    assert bad.details["problems"] == [f"may INSERT on public.{wallet}, which it should not"]
    assert checks[f"role {readonly} exists and can log in"].passed

    _apply(db, first.operations, action="rollback")
    assert db.role_names() == [readonly]
    assert db.acls() == before  # SELECT on User and INSERT on Wallet survived


def test_connect_is_granted_where_public_may_not_connect(
    make_roles_db: MakeDb, tmp_path: Path
) -> None:
    db = make_roles_db(Naming.SNAKE, owner=True)  # the owner owns the database, as on Neon
    db.server.execute(
        sql.SQL("REVOKE CONNECT ON DATABASE {} FROM PUBLIC").format(sql.Identifier(db.admin.dbname))
    )
    before = db.acls()
    first = _plan(db)
    grants = [op for op in first.operations if "CONNECT" in op.object]
    assert [op.sql for op in grants] == [
        f'GRANT CONNECT ON DATABASE "{db.admin.dbname}" TO "{role}"' for role in db.roles.names()
    ]
    _apply(db, first.operations)
    checks = _verify(db, _write(tmp_path, db, first.secrets))
    assert all(v.passed for v in checks.values()), [v.to_json() for v in checks.values()]
    _apply(db, first.operations, action="rollback")
    assert db.role_names() == []
    assert db.acls() == before


def test_existing_role_with_wrong_attributes_is_reported(make_roles_db: MakeDb) -> None:
    db = make_roles_db(Naming.PRISMA)
    admin = db.roles.admin
    db.server.execute(sql.SQL("CREATE ROLE {} NOLOGIN CREATEDB").format(sql.Identifier(admin)))
    first = _plan(db)
    assert first.warnings == [
        f"role {admin} existed before pgrunbook and has NOLOGIN, CREATEDB; an application "
        f"role should be LOGIN without these (pgrunbook does not change roles it did not "
        f"create: ALTER ROLE {admin} ... yourself)"
    ]
    _apply(db, first.operations)
    checks = _verify(db)
    exists = checks[f"role {admin} exists and can log in"]
    assert not exists.passed
    assert exists.details == {
        "exists": True,
        "can_login": False,
        "unwanted_attributes": ["NOLOGIN", "CREATEDB"],
    }
    assert checks[f"role {admin} privileges"].passed  # SET ROLE works without LOGIN
    _apply(db, first.operations, action="rollback")
    assert db.role_names() == [admin]


def test_role_without_createrole_is_refused(make_roles_db: MakeDb, login_role: str) -> None:
    db = make_roles_db(Naming.PRISMA)
    db.runner = db.admin.with_params(user=login_role, password=ROLE_PASSWORD)
    result = _plan(db)
    assert [r.object for r in result.refused] == [f"role {r}" for r in db.roles.names()]
    assert "may not create roles" in result.refused[0].reason
    assert "CREATEROLE" in result.refused[0].fix
    assert result.operations == [] and result.secrets == {}


def test_grants_on_tables_it_does_not_own_are_skipped(make_roles_db: MakeDb) -> None:
    db = make_roles_db(Naming.SNAKE, owner=True)
    with psycopg.connect(db.admin.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE TABLE public.not_mine (id int)")  # owned by the superuser
    result = _plan(db)
    skipped = {s.object: s.reason for s in result.skipped}
    user = db.roles.user
    reason = skipped[f"SELECT, INSERT, UPDATE, DELETE on table public.not_mine to {user}"]
    assert reason.startswith(
        f"table public.not_mine is owned by {db.admin.user} and {db.runner.user} neither owns"
    )
    assert not any("not_mine" in op.object for op in result.operations)
    assert len(result.skipped) == 3
    # the role's DROP revokes only where it holds something: not_mine does not fail it
    before = db.acls()
    _apply(db, result.operations)
    _apply(db, result.operations, action="rollback")
    assert db.role_names() == []
    assert db.acls() == before


def _psql(info: ConnInfo, path: Path, *variables: str) -> subprocess.CompletedProcess[str]:
    return run_psql(info, path, *variables, check=False, quiet=True)


def test_export_scripts_run_with_psql(make_roles_db: MakeDb, tmp_path: Path) -> None:
    db = make_roles_db(Naming.SNAKE, owner=True)
    before = db.acls()
    with open_context(db.runner, db.profile) as ctx:
        script = export(ctx)
    forward, rollback = tmp_path / "05_security_permissions.sql", tmp_path / "rollback.sql"
    forward.write_text(script.forward)
    rollback.write_text(script.rollback)
    assert "psql -v ON_ERROR_STOP=1 -v app_user_" in script.forward
    assert f'GRANT ALL ON ALL TABLES IN SCHEMA "public" TO "{db.roles.admin}"' in (script.forward)

    missing = _psql(db.runner, forward)
    assert missing.returncode == 3
    assert f"role {db.roles.user} does not exist: run psql with -v" in missing.stderr
    assert db.role_names() == []

    passwords = {r: f"Pw-{uuid.uuid4().hex}" for r in db.roles.names()}
    variables = [f"{password_variable(r)}={pw}" for r, pw in passwords.items()]
    for _ in range(2):  # idempotent
        done = _psql(db.runner, forward, *variables)
        assert done.returncode == 0, done.stderr
    assert _psql(db.runner, forward).returncode == 0  # no password needed once they exist
    assert db.role_names() == sorted(db.roles.names())
    assert _plan(db).operations == []  # the same definitions as plan
    checks = _verify(db, _write(tmp_path, db, passwords))
    assert all(v.passed for v in checks.values()), [v.to_json() for v in checks.values()]
    assert {v.details.get("method") for v in checks.values()} == {None, "login"}

    for _ in range(2):
        undone = _psql(db.runner, rollback)
        assert undone.returncode == 0, undone.stderr
    assert db.role_names() == []
    assert db.acls() == before


def test_env_file_for_a_pooled_app_url(tmp_path: Path) -> None:
    app = parse_dsn(
        "postgresql://neondb_owner:Own3rPw@ep-x-pooler.eu.aws.neon.tech:5432/neondb"
        "?sslmode=require&connection_limit=5&pgbouncer=true"
    )
    roles = RolesSpec()
    passwords = {"app_user": "p@ss/w:rd%#?", "app_readonly": "ro-pw"}
    path = tmp_path / ".env"
    old_umask = os.umask(0)
    try:
        write_env_file(path, app, passwords, roles)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert text.startswith("# Written by pgrunbook (step roles) on ")
    values = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert values == [
        'DATABASE_URL="postgresql://app_user:p%40ss%2Fw%3Ard%25%23%3F@'
        "ep-x-pooler.eu.aws.neon.tech:5432/neondb"
        '?sslmode=require&connection_limit=5&pgbouncer=true"',
        'APP_READONLY_DATABASE_URL="postgresql://app_readonly:ro-pw@'
        "ep-x-pooler.eu.aws.neon.tech:5432/neondb"
        '?sslmode=require&connection_limit=5&pgbouncer=true"',
    ]
    assert "Own3rPw" not in text  # the owner's password is not copied
    assert read_env_file(path, roles) == passwords
    parsed = parse_dsn(values[0].split("=", 1)[1].strip('"'))
    assert (parsed.user, parsed.password, parsed.params["sslmode"]) == (
        "app_user",
        "p@ss/w:rd%#?",
        "require",
    )


def test_env_file_for_a_unix_socket(tmp_path: Path) -> None:
    app = ConnInfo(params={"host": "/run/postgresql", "port": "5433", "dbname": "app"})
    path = tmp_path / "sock.env"
    write_env_file(path, app, {"app_admin": "pw"}, RolesSpec())
    [line] = [x for x in path.read_text().splitlines() if x and not x.startswith("#")]
    assert line == (
        'APP_ADMIN_DATABASE_URL="postgresql://app_admin:pw@/app?host=/run/postgresql&port=5433"'
    )
    parsed = parse_dsn(line.split("=", 1)[1].strip('"'))
    assert (parsed.host, parsed.port, parsed.user) == ("/run/postgresql", "5433", "app_admin")
