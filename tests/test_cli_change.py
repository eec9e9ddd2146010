"""The change commands through the CLI on a real server: ``plan``, ``apply``, ``verify``,
``fix constraints``, ``status``, ``rollback``, ``sql export`` and ``profile export``: their
JSON contracts (PRODUCT.md), exit codes, one-line refusals that change nothing, passwords
that never reach the output, and the exported psql scripts run with the real psql."""

from __future__ import annotations

import io
import json
import re
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pgrunbook.change.steps.roles.envfile import read_env_file, role_url
from pgrunbook.change.steps.roles.script import password_variable
from pgrunbook.cli.main import run
from pgrunbook.dsn import ConnInfo
from pgrunbook.profile import load_profile
from pgrunbook.profile.load import builtin_text
from pgrunbook.reference import Naming
from pgrunbook.sqlexport import script_names
from tests.support import (
    APP_ROLES,
    SEEDED_VIOLATIONS,
    PgServer,
    Template,
    drop_app_roles,
    execute,
    rows,
    run_psql,
    url,
)

STEPS = ["indexes", "triggers", "audit", "roles", "constraints"]
OPERATION_KEYS = {"object", "sql", "transactional", "lock", "reverse_sql", "why"}
PROFILE = load_profile()
INDEXES = {spec.name: spec.table for spec in PROFILE.indexes}
NEON_POOLED = (
    "postgresql://neondb_owner:N3onPw@ep-wild-sun-a1b2c3-pooler.eu-central-1.aws.neon.tech"
    "/neondb?sslmode=require&pgbouncer=true&connection_limit=1"
)
BOUNCER = "postgresql://app:B0uncerPw@pgbouncer.invalid:6432/shop?pgbouncer=true"

# One catalog snapshot: what the change commands could create, alter or drop.
CATALOG_SQL = {
    "schemas": "SELECT nspname FROM pg_namespace WHERE nspname !~ '^pg_'"
    " AND nspname <> 'information_schema' ORDER BY 1",
    "relations": "SELECT c.relname, c.relkind::text, i.indisvalid FROM pg_class c"
    " JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_index i ON i.indexrelid = c.oid"
    " WHERE n.nspname = 'public' ORDER BY 1",
    "constraints": "SELECT conrelid::regclass::text, conname, convalidated FROM pg_constraint"
    " WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2",
    "triggers": "SELECT tgrelid::regclass::text, tgname FROM pg_trigger WHERE NOT tgisinternal"
    " ORDER BY 1, 2",
    "functions": "SELECT proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace"
    " ORDER BY 1",
    "roles": "SELECT rolname FROM pg_roles WHERE starts_with(rolname, 'app_') ORDER BY 1",
    # a grant and its revoke leave the default privileges spelled out: compare them as such
    "acl": "SELECT relname, coalesce(relacl, acldefault('r', relowner))::text FROM pg_class"
    " WHERE relnamespace = 'public'::regnamespace AND relkind = 'r' ORDER BY 1",
}


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    @property
    def text(self) -> str:
        """stdout with rich's line wrapping undone, for phrases."""
        return " ".join(self.out.split())

    def one_line_error(self, *phrases: str) -> str:
        """The command failed with exit code 2, one ``error:`` line and nothing on stdout."""
        assert self.code == 2, (self.code, self.out, self.err)
        assert self.out == ""
        line = self.err.strip()
        assert "\n" not in line and line.startswith("error: "), self.err
        for phrase in phrases:
            assert phrase in line, (phrase, line)
        return line


class Cli:
    """``pgrunbook ARGS --dsn URL`` in-process, stdout and stderr captured."""

    def __init__(self, capsys: pytest.CaptureFixture[str], info: ConnInfo | None) -> None:
        self.capsys, self.info = capsys, info

    def __call__(self, *args: str) -> Result:
        dsn = ["--dsn", url(self.info)] if self.info is not None else []
        code = run([*args, *dsn])
        out, err = self.capsys.readouterr()
        return Result(code, out, err)


@pytest.fixture
def prisma(db: ConnInfo, pg_server: PgServer) -> Iterator[ConnInfo]:
    yield db
    drop_app_roles(pg_server, db)


@pytest.fixture
def snake(snake_db: ConnInfo, pg_server: PgServer) -> Iterator[ConnInfo]:
    yield snake_db
    drop_app_roles(pg_server, snake_db)


@pytest.fixture(params=[Naming.PRISMA, Naming.SNAKE], ids=["prisma", "snake"])
def either(
    request: pytest.FixtureRequest, make_db: Any, templates: dict[Naming, Template],
    pg_server: PgServer,
) -> Iterator[tuple[ConnInfo, Naming]]:  # fmt: skip
    """A fresh seeded database in each naming (its app roles dropped afterwards)."""
    info: ConnInfo = make_db(templates[request.param].name)
    yield info, request.param
    drop_app_roles(pg_server, info)


@pytest.fixture(autouse=True)
def _no_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No DATABASE_URL / DIRECT_URL / .env but the test's own; stdin is not a terminal and
    would answer yes if it were read."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("DIRECT_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))


def catalog(info: ConnInfo) -> dict[str, list[tuple[object, ...]]]:
    return {name: rows(info, query) for name, query in CATALOG_SQL.items()}


def without_journal(snapshot: dict[str, list[tuple[object, ...]]]) -> dict[str, Any]:
    return {**snapshot, "schemas": [s for s in snapshot["schemas"] if s != ("pgrunbook",)]}


def checksums(info: ConnInfo) -> dict[str, tuple[object, ...]]:
    """Every public table's row count and a checksum of its content."""
    out = {}
    tables = "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace"
    for (table,) in rows(info, tables + " AND relkind = 'r'"):
        query = sql.SQL(
            "SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), ''))"
            " FROM {} AS t"
        ).format(sql.Identifier("public", str(table)))
        out[str(table)] = rows(info, query)[0]
    return out


def states(result: Result) -> dict[str, str]:
    document = result.json()
    assert set(document) == {"steps", "prisma"}
    return {s["step"]: s["state"] for s in document["steps"]}


def passwords(path: Path) -> dict[str, str]:
    found = read_env_file(path, PROFILE.roles)
    assert set(found) == set(APP_ROLES)
    return found


def assert_secret(result: Result, *secrets: str | None) -> None:
    for secret in secrets:
        if secret:
            assert secret not in result.out and secret not in result.err


def logs_in(info: ConnInfo, role: str, password: str) -> bool:
    with psycopg.connect(info.with_params(user=role, password=password).conninfo()) as conn:
        row = conn.execute("SELECT current_user").fetchone()
    return row is not None and row[0] == role


def psql(server: PgServer, info: ConnInfo, file: Path, *variables: str) -> None:
    done = run_psql(info, file, *variables, check=False, quiet=True)
    assert done.returncode == 0, f"{file.name}: {done.stderr}"


@pytest.mark.parametrize("naming", [Naming.PRISMA, Naming.SNAKE], ids=["prisma", "snake"])
def test_plan_prints_the_contract_and_changes_nothing(
    naming: Naming,
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
) -> None:
    info: ConnInfo = request.getfixturevalue("db" if naming is Naming.PRISMA else "snake_db")
    cli = Cli(capsys, info)
    before = catalog(info)

    result = cli("plan", "--json")
    assert result.code == 0, result.err
    document = result.json()
    assert set(document) == {"steps"}
    assert [s["step"] for s in document["steps"]] == STEPS
    steps = {s["step"]: s for s in document["steps"]}
    for step in document["steps"]:
        assert step["operations"], step["step"]
        for op in step["operations"]:
            assert set(op) == OPERATION_KEYS
            assert isinstance(op["sql"], str) and op["sql"]
            assert isinstance(op["transactional"], bool)
            assert isinstance(op["lock"], str | None)
            # every change has its exact inverse; validating a constraint needs none
            validates = op["object"].startswith("validate ")
            assert (op["reverse_sql"] is None) is validates, op

    indexes = {op["object"]: op for op in steps["indexes"]["operations"]}
    assert set(indexes) == {f"index public.{name}" for name in INDEXES}
    for name, table in INDEXES.items():
        op = indexes[f"index public.{name}"]
        assert op["sql"].startswith(f'CREATE INDEX CONCURRENTLY IF NOT EXISTS "{name}" ON ')
        assert op["transactional"] is False
        assert op["lock"] == f"SHARE UPDATE EXCLUSIVE on public.{naming.table(table)}"
        assert op["reverse_sql"] == f'DROP INDEX CONCURRENTLY IF EXISTS "public"."{name}"'
    room = indexes["index public.idx_message_room_created_desc"]["sql"]
    assert room.endswith(
        f'ON "public"."{naming.table("Message")}" ("{naming.column("roomId")}", '
        f'"{naming.column("createdAt")}" DESC)'
    )
    refused = {r["object"] for r in steps["constraints"]["refused"]}
    assert refused == {
        f"constraint public.{naming.table(table)}.{name}"
        for name, (table, _) in SEEDED_VIOLATIONS.items()
    }
    planned = " ".join(op["object"] for op in steps["constraints"]["operations"])
    assert not any(name in planned for name in SEEDED_VIOLATIONS)
    roles = [op for op in steps["roles"]["operations"] if op["sql"].startswith("CREATE ROLE")]
    assert [op["object"] for op in roles] == [f"role {r}" for r in APP_ROLES]

    assert catalog(info) == before  # no journal schema, no index, no role: read-only


def test_plan_sql_step_selection_and_unknown_step(
    db: ConnInfo, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = Cli(capsys, db)
    before = catalog(db)

    result = cli("plan", "--sql")
    assert result.code == 0 and result.err == ""
    for name in INDEXES:
        assert f'CREATE INDEX CONCURRENTLY IF NOT EXISTS "{name}" ON ' in result.out
    assert "-- undo: DROP INDEX CONCURRENTLY IF EXISTS" in result.out
    for name in SEEDED_VIOLATIONS:
        assert f".{name}: " in result.out  # refused, as a comment
    assert "--   fix: pgrunbook fix constraints --yes" in result.out
    assert_secret(result, db.password)
    # the roles' passwords are generated at plan time and shown masked, never in clear
    assert re.findall(r"PASSWORD '([^']*)'", result.out) == ["********"] * len(APP_ROLES)
    assert "SCRAM-SHA-256$" not in result.out

    only = cli("plan", "indexes", "--json")
    assert only.code == 0
    [step] = only.json()["steps"]
    assert step["step"] == "indexes" and len(step["operations"]) == len(INDEXES)

    for command in ("plan", "apply", "verify", "rollback", "status"):
        cli(command, "bogus").one_line_error(
            "unknown step 'bogus'", "steps are: indexes, triggers, audit, roles, constraints"
        )
    assert catalog(db) == before


# -- apply, verify, fix, status, rollback ---------------------------------------------------


def test_apply_refusals_change_nothing(
    prisma: ConnInfo, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    cli = Cli(capsys, prisma)
    before, data = catalog(prisma), checksums(prisma)
    secrets_file = tmp_path / "roles.env"

    dry = cli("apply", "--dry-run")
    assert dry.code == 1  # the seeded violations are refused, even in a dry run
    assert 'CREATE INDEX CONCURRENTLY IF NOT EXISTS "idx_report_pending"' in dry.out
    assert "Dry run: " in dry.text and "nothing was changed" in dry.text
    assert "8 object(s) refused" in dry.text

    cli("apply", "--passwords-file", str(secrets_file)).one_line_error(
        "needs confirmation", "pass --yes"
    )
    cli("apply", "--yes").one_line_error(
        "the roles step creates login roles", "--passwords-file FILE", "--show-passwords"
    )
    unwritable = str(tmp_path / "no" / "such" / "dir.env")
    cli("apply", "--yes", "--passwords-file", unwritable).one_line_error(
        "cannot write the passwords file"
    )
    assert not secrets_file.exists()
    assert catalog(prisma) == before  # not even the journal schema
    assert checksums(prisma) == data


def test_apply_fix_verify_status_drift_and_rollback(
    prisma: ConnInfo,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    templates: dict[Naming, Template],
) -> None:
    """One database through the whole cycle, as a user would drive it."""
    cli = Cli(capsys, prisma)
    manifest = templates[Naming.PRISMA].report.anomalies
    before = catalog(prisma)
    secrets_file = tmp_path / "roles.env"

    pending = cli("status", "--json")
    assert pending.code == 0
    assert states(pending) == dict.fromkeys(STEPS, "pending")

    # apply: everything but the violated constraints; the passwords go to the file only
    applied = cli("apply", "--yes", "--passwords-file", str(secrets_file))
    assert applied.code == 1, applied.err
    for name, (table, _) in SEEDED_VIOLATIONS.items():
        assert f"refused constraint public.{table}.{name}: " in applied.text
    assert "fix: pgrunbook fix constraints --yes" in applied.text
    assert "indexes: changed 15" in applied.text
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    created = passwords(secrets_file)
    assert_secret(applied, prisma.password, *created.values())
    assert f"wrote the passwords of app_admin, app_readonly, app_user to {secrets_file}" in (
        " ".join(applied.err.split())
    )

    # before the fix, verify fails on the constraints only; the roles log in
    failing = cli("verify", "--passwords-file", str(secrets_file), "--json")
    assert failing.code == 1
    document = failing.json()
    assert set(document) == {"checks", "passed"} and document["passed"] is False
    assert {c["step"] for c in document["checks"] if not c["passed"]} == {"constraints"}
    failed = " ".join(c["name"] for c in document["checks"] if not c["passed"])
    assert all(name in failed for name in SEEDED_VIOLATIONS)
    logins = [c for c in document["checks"] if c["name"].endswith(" privileges")]
    assert len(logins) == 3
    assert all(c["passed"] and c["details"]["method"] == "login" for c in logins)
    assert_secret(failing, *created.values())

    again = cli("apply", "--yes")  # roles exist: no passwords needed, nothing to change
    assert again.code == 1
    assert "Nothing to change: everything is already applied." in again.text
    assert "8 object(s) refused" in again.text
    assert states(cli("status", "--json")) == {
        **dict.fromkeys(STEPS, "applied"),
        "constraints": "partial",
    }

    # fix constraints: the dry run and a refusal to run unconfirmed change no row
    data = checksums(prisma)
    preview = cli("fix", "constraints", "--dry-run", "--json")
    assert preview.code == 0
    fixes = {f["constraint"]: f for f in preview.json()["fixes"]}
    for name, (_, anomaly) in SEEDED_VIOLATIONS.items():
        assert fixes[name]["violations"] == manifest[anomaly], name
        assert fixes[name]["rows_changed"] == 0 and fixes[name]["sql"]
    total = sum(manifest[anomaly] for _, anomaly in SEEDED_VIOLATIONS.values())
    human = cli("fix", "constraints", "--dry-run")
    assert human.code == 0
    assert f"Dry run: {total} row(s) would be changed; nothing was changed." in human.text
    assert "FOR UPDATE OF t" in human.out  # the statements it would run
    cli("fix", "constraints").one_line_error(f"change {total} row(s)", "pass --yes")
    assert checksums(prisma) == data

    fixed = cli("fix", "constraints", "--yes")
    assert fixed.code == 0, fixed.out
    assert checksums(prisma) != data
    assert rows(
        prisma,
        "SELECT count(*), bool_and(convalidated) FROM pg_constraint"
        " WHERE contype = 'c' AND starts_with(conname, 'chk_')",
    ) == [(12, True)]

    passing = cli("verify", "--passwords-file", str(secrets_file), "--json")
    assert passing.code == 0, passing.out
    document = passing.json()
    assert set(document) == {"checks", "passed"} and document["passed"] is True
    assert all(set(c) == {"step", "name", "passed", "details"} for c in document["checks"])
    assert {c["step"] for c in document["checks"]} == set(STEPS)
    assert all(c["passed"] for c in document["checks"])
    assert states(cli("status", "--json")) == dict.fromkeys(STEPS, "applied")
    assert "Nothing to change" in cli("apply", "--yes").text

    # an index dropped behind pgrunbook's back: drifted, exit code 1
    execute(prisma, "DROP INDEX idx_report_pending")
    drifted = cli("status", "--json")
    assert drifted.code == 1
    assert states(drifted) == {**dict.fromkeys(STEPS, "applied"), "indexes": "drifted"}
    human_status = cli("status")
    assert human_status.code == 1 and "drifted" in human_status.out

    # rollback: the dry run lists the inverse statements, an unconfirmed run is refused
    at_drift = catalog(prisma)
    dry = cli("rollback", "--dry-run")
    assert dry.code == 0
    for name in INDEXES:
        assert f'DROP INDEX CONCURRENTLY IF EXISTS "public"."{name}";' in dry.out
    for role in APP_ROLES:
        assert f'DROP ROLE IF EXISTS "{role}";' in dry.out
    assert "nothing was changed" in dry.text
    cli("rollback").one_line_error("needs confirmation", "pass --yes")
    assert catalog(prisma) == at_drift

    undone = cli("rollback", "--yes")
    assert undone.code == 0 and "Rolled back " in undone.text
    assert states(cli("status", "--json")) == dict.fromkeys(STEPS, "pending")
    assert without_journal(catalog(prisma)) == without_journal(before)
    assert rows(prisma, CATALOG_SQL["roles"]) == []


def test_apply_json_then_rollback_in_snake_case(
    snake: ConnInfo, capsys: pytest.CaptureFixture[str], tmp_path: Path, pg_server: PgServer
) -> None:
    cli = Cli(capsys, snake)
    before = catalog(snake)
    secrets_file = tmp_path / "roles.env"

    applied = cli("apply", "--yes", "--json", "--passwords-file", str(secrets_file))
    assert applied.code == 1
    document = applied.json()  # stdout holds the JSON document and nothing else
    assert {"dry_run", "steps", "changed", "refused", "seconds"} <= set(document)
    assert document["dry_run"] is False and document["refused"] == len(SEEDED_VIOLATIONS)
    assert [s["step"] for s in document["steps"]] == STEPS
    assert document["changed"] == sum(
        1 for s in document["steps"] for a in s["applied"] if a["skipped"] is None
    )
    assert "passwords" not in document
    assert_secret(applied, snake.password, *passwords(secrets_file).values())
    assert rows(snake, CATALOG_SQL["roles"]) == sorted((r,) for r in APP_ROLES)
    assert {r[0] for r in rows(snake, CATALOG_SQL["triggers"])} >= {
        "users",
        "messages",
        "wallets",
    }
    assert states(cli("status", "--json")) == {
        **dict.fromkeys(STEPS, "applied"),
        "constraints": "partial",
    }

    # the dry run prints exactly what rollback runs: psql running it undoes everything
    dry = cli("rollback", "--dry-run")
    assert dry.code == 0 and dry.out.startswith("-- pgrunbook rollback: ")
    statements, summary = dry.out.rstrip("\n").rsplit("\n", 1)
    assert summary.startswith("Dry run: ") and summary.endswith("nothing was changed.")
    script = tmp_path / "rollback.sql"
    script.write_text(statements)
    psql(pg_server, snake, script)
    assert without_journal(catalog(snake)) == without_journal(before)
    assert set(states(cli("status", "--json")).values()) == {"drifted"}

    undone = cli("rollback", "--yes", "--json")  # IF EXISTS: what is gone is no error
    assert undone.code == 0
    assert set(undone.json()) == {"dry_run", "operations", "undone", "prisma_written"}
    assert undone.json()["dry_run"] is False
    assert states(cli("status", "--json")) == dict.fromkeys(STEPS, "pending")
    assert without_journal(catalog(snake)) == without_journal(before)


def test_passwords_are_kept_when_a_later_step_fails(
    prisma: ConnInfo, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The constraints step runs after the roles exist; a session reading "Gift" keeps its
    ACCESS EXCLUSIVE lock out of reach until the budget runs out. The roles made before
    that failure must log in with the passwords in the file."""
    cli = Cli(capsys, prisma)
    secrets_file = tmp_path / "roles.env"
    with psycopg.connect(prisma.conninfo()) as reader:
        reader.execute('SELECT count(*) FROM "Gift"')  # ACCESS SHARE until the rollback
        failed = cli("apply", "--yes", "--budget", "1", "--passwords-file", str(secrets_file))
        reader.rollback()
    line = failed.err.strip().splitlines()[-1]  # the lock budget ran out: exit code 1
    assert failed.code == 1 and line.startswith("error: gave up on constraint "), failed.err
    assert "chk_gift_price_positive after 1 s" in line and "holds AccessShareLock" in line
    assert rows(prisma, CATALOG_SQL["roles"]) == sorted((r,) for r in APP_ROLES)
    created = passwords(secrets_file)
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    assert all(logs_in(prisma, role, pw) for role, pw in created.items())
    assert_secret(failed, *created.values())


# -- sql export -----------------------------------------------------------------------------


def test_exported_scripts_run_with_psql_then_verify_passes(
    either: tuple[ConnInfo, Naming],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    pg_server: PgServer,
) -> None:
    """The issue's "done when": scripts 02-06 from ``sql export``, run with psql on a
    database whose violations were fixed, pass ``pgrunbook verify``."""
    info, naming = either
    cli = Cli(capsys, info)
    # repair the seeded rows the pgrunbook way, then undo the schema changes: data fixed
    assert cli("apply", "audit", "--yes").code == 0
    assert cli("fix", "constraints", "--yes").code == 0
    assert cli("rollback", "--yes").code == 0
    assert states(cli("status", "--json")) == dict.fromkeys(STEPS, "pending")

    out = tmp_path / "sql"
    exported = cli("sql", "export", str(out))
    assert exported.code == 0, exported.err
    assert exported.out.splitlines() == [str(out / name) for name in script_names()]
    assert sorted(p.name for p in out.iterdir()) == sorted(script_names())
    assert len(script_names()) == 16
    assert "wrote 16 scripts" in exported.err
    texts = {p.name: p.read_text() for p in out.iterdir()}
    assert info.password is None or not any(info.password in t for t in texts.values())
    message, room_id = naming.table("Message"), naming.column("roomId")
    assert f'ON "public"."{message}" ("{room_id}", ' in texts["02_performance_indexes.sql"]

    (out / "02_performance_indexes.sql").write_text("-- edited by hand\n")
    cli("sql", "export", str(out)).one_line_error("already exists", "--overwrite")
    assert (out / "02_performance_indexes.sql").read_text() == "-- edited by hand\n"
    assert cli("sql", "export", str(out), "--overwrite").code == 0
    assert (out / "02_performance_indexes.sql").read_text().startswith("-- 02_performance")

    secrets = {role: f"Pw-{role}-7x!" for role in APP_ROLES}
    variables = [f"{password_variable(role)}={pw}" for role, pw in secrets.items()]
    scripts = sorted(out.glob("0[2-6]_*.sql"))
    assert [s.name[:2] for s in scripts] == ["02", "03", "04", "05", "06"]
    for _ in range(2):  # idempotent: the second run changes nothing and does not fail
        for script in scripts:
            psql(pg_server, info, script, *(variables if script.name.startswith("05") else ()))

    secrets_file = tmp_path / "roles.env"
    secrets_file.write_text(
        "".join(f'URL_{role}="{role_url(info, role, pw)}"\n' for role, pw in secrets.items())
    )
    verified = cli("verify", "--passwords-file", str(secrets_file), "--json")
    assert verified.code == 0, [c for c in verified.json()["checks"] if not c["passed"]]
    assert verified.json()["passed"] is True
    roles = [c for c in verified.json()["checks"] if c["step"] == "roles"]
    methods = {c["details"].get("method") for c in roles}
    assert methods == {None, "login"}  # "exists" checks, then each role logged in
    assert states(cli("status", "--json")) == dict.fromkeys(STEPS, "applied")
    # pgrunbook did not make these objects, so its rollback leaves them; the script drops them
    assert "Nothing to roll back" in cli("rollback", "--yes").text
    psql(pg_server, info, out / "rollback_all.sql")
    assert states(cli("status", "--json")) == dict.fromkeys(STEPS, "pending")
    assert rows(info, CATALOG_SQL["roles"]) == []


# -- profile export -------------------------------------------------------------------------


def test_profile_export_edit_and_plan_with_it(
    db: ConnInfo, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    cli = Cli(capsys, None)
    file = tmp_path / "app.toml"
    written = cli("profile", "export", str(file))
    assert written.code == 0 and written.out == ""
    assert f"--profile {file}" in " ".join(written.err.split())
    assert file.read_text() == builtin_text()

    file.write_text("# mine\n")
    cli("profile", "export", str(file)).one_line_error("already exists", "--force")
    assert file.read_text() == "# mine\n"
    assert cli("profile", "export", str(file), "--force").code == 0
    assert file.read_text() == builtin_text()
    cli("profile", "export", str(tmp_path / "no" / "dir.toml")).one_line_error("cannot write")

    # the user's edits: one constraint fewer, one index renamed
    text = file.read_text()
    block = text.index('[[constraints]]\nname = "chk_follow_not_self"')
    end = text.index("[[", block + 2)
    text = text[:block] + text[end:]
    assert text.count('name = "idx_report_pending"') == 1
    file.write_text(text.replace('name = "idx_report_pending"', 'name = "idx_report_open"'))

    planner = Cli(capsys, db)
    builtin = {s["step"]: s for s in planner("plan", "--json").json()["steps"]}
    edited_plan = planner("plan", "--json", "--profile", str(file))
    assert edited_plan.code == 0
    edited = {s["step"]: s for s in edited_plan.json()["steps"]}
    index_ops = {op["object"]: op["sql"] for op in edited["indexes"]["operations"]}
    assert "index public.idx_report_pending" not in index_ops
    assert index_ops["index public.idx_report_open"] == (
        'CREATE INDEX CONCURRENTLY IF NOT EXISTS "idx_report_open" ON "public"."Report" '
        '("createdAt") WHERE "status" = \'PENDING\''
    )
    assert len(index_ops) == len(INDEXES)
    refused = {r["object"] for r in edited["constraints"]["refused"]}
    assert refused == {r["object"] for r in builtin["constraints"]["refused"]} - {
        "constraint public.Follow.chk_follow_not_self"
    }
    for step in ("triggers", "audit", "roles"):
        assert edited[step]["operations"] == builtin[step]["operations"]

    broken = tmp_path / "broken.toml"
    broken.write_text('[[indexes]]\nname = "idx_x"\n')
    planner("plan", "--profile", str(broken)).one_line_error(f"profile {broken}: ")
    broken.write_text("[[indexes]\n")
    planner("plan", "--profile", str(broken)).one_line_error(f"{broken}")
    planner("plan", "--profile", str(tmp_path / "missing.toml")).one_line_error("does not exist")


# -- poolers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ("apply", "--yes"),
        ("rollback", "--yes"),
        ("fix", "constraints", "--yes"),
        ("verify",),
        ("status",),
        ("plan",),
        ("sql", "export", "sql"),
    ],
    ids=lambda c: " ".join(c[:2]),
)
def test_pooled_dsn_is_refused_before_connecting(
    command: tuple[str, ...], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A PgBouncer URL (pgbouncer=true) without DIRECT_URL: one line, before any connection
    attempt (the host is unresolvable, so a connection attempt would say so instead)."""
    result = Cli(capsys, None)(*command, "--dsn", BOUNCER)
    result.one_line_error(
        "--dsn points at a connection pooler", "needs a direct session", "set DIRECT_URL"
    )
    assert "B0uncerPw" not in result.err
    assert not (tmp_path / "sql").exists()


def test_neon_pooler_as_direct_url_is_refused(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", NEON_POOLED)
    monkeypatch.setenv("DIRECT_URL", NEON_POOLED)
    line = Cli(capsys, None)("apply", "--yes").one_line_error(
        "DIRECT_URL points at a connection pooler", "the host without '-pooler'"
    )
    assert "N3onPw" not in line


def test_neon_pooled_url_alone_uses_the_direct_host(
    db: ConnInfo, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Neon's pooled DATABASE_URL without DIRECT_URL: the session goes to the host without
    '-pooler' (hostaddr points both names at the test server, so no DNS is involved)."""
    if db.host not in ("127.0.0.1", "localhost"):
        pytest.skip("needs the embedded server on 127.0.0.1")
    pooled = db.with_params(
        host="ep-wild-sun-a1b2c3-pooler.eu-central-1.aws.neon.tech", hostaddr="127.0.0.1"
    )
    monkeypatch.setenv("DATABASE_URL", url(pooled))
    result = Cli(capsys, None)("plan", "indexes", "--json")
    assert result.code == 0, result.err
    assert len(result.json()["steps"][0]["operations"]) == len(INDEXES)
    assert "using the direct host ep-wild-sun-a1b2c3.eu-central-1.aws.neon.tech" in " ".join(
        result.err.split()
    )
