"""``pgrunbook rehearse``: the steps applied and verified on a throwaway copy, never on the
database itself; on plain PostgreSQL a scratch database (TEMPLATE, or pg_dump/pg_restore when
someone else is connected), on Neon a branch through the local fake Neon API."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pgrunbook.change.steps import select
from pgrunbook.cli.main import cli, run
from pgrunbook.cli.rehearse_cmd import rehearse
from pgrunbook.dsn import ConnInfo
from pgrunbook.profile import load_profile
from pgrunbook.rehearse import rehearse as rehearse_library
from tests.neon_fake import FakeNeon, serve
from tests.support import (
    APP_ROLES,
    ROLE_PASSWORD,
    RUNBOOK_INDEXES,
    SEEDED_VIOLATIONS,
    PgServer,
    rows,
    schema_dump,
    url,
)

if "rehearse" not in cli.commands:  # until the lead registers it in cli/main.py
    cli.add_command(rehearse, "rehearse")

TABLES_SQL = (
    "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace"
    " AND relkind = 'r' ORDER BY 1"
)
OUR_INDEXES_SQL = (
    "SELECT indexname FROM pg_indexes WHERE schemaname = 'public'"
    " AND indexname = ANY(%s) ORDER BY 1"
)


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def one_line_error(self, *phrases: str) -> str:
        assert self.code == 2, (self.code, self.out, self.err)
        assert self.out == ""
        lines = self.err.strip().splitlines()  # progress lines, then the error
        line = lines[-1]
        assert line.startswith("error: "), self.err
        assert sum(x.startswith("error") for x in lines) == 1, self.err
        for phrase in phrases:
            assert phrase in line, (phrase, line)
        return line


Rehearse = Callable[..., Result]


@pytest.fixture
def pgr(capsys: pytest.CaptureFixture[str]) -> Rehearse:
    def call(info: ConnInfo, *args: str) -> Result:
        code = run(["rehearse", *args, "--dsn", url(info)])
        out, err = capsys.readouterr()
        if info.password:  # the source's password never reaches the user
            assert info.password not in out + err
        return Result(code, out, err)

    return call


PGRUNBOOK_OBJECTS_SQL = (
    "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE n.nspname = 'pgrunbook' ORDER BY 1"
)


def snapshot(server: PgServer, info: ConnInfo) -> tuple[str, dict[str, int]]:
    """The schema (pgrunbook's own schema too: no journal written) and every table's exact
    row count."""
    counts: dict[str, int] = {f"pgrunbook.{r[0]}": -1 for r in rows(info, PGRUNBOOK_OBJECTS_SQL)}
    with psycopg.connect(info.conninfo(), autocommit=True) as conn:
        for (table,) in conn.execute(TABLES_SQL).fetchall():
            query = sql.SQL("SELECT count(*) FROM public.{}").format(sql.Identifier(str(table)))
            row = conn.execute(query).fetchone()
            assert row is not None
            counts[str(table)] = int(row[0])
    return schema_dump(server, info), counts


def scratch_databases(server: PgServer, source: ConnInfo) -> list[str]:
    found = rows(
        server.admin,
        "SELECT datname FROM pg_database WHERE starts_with(datname, %s) ORDER BY 1",
        (f"{source.dbname}_rehearse_",),
    )
    return [str(r[0]) for r in found]


def app_roles(server: PgServer) -> list[str]:
    found = rows(
        server.admin, "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (list(APP_ROLES),)
    )
    return [str(r[0]) for r in found]


def test_template_copy_rehearses_and_leaves_nothing_behind(
    db: ConnInfo, pg_server: PgServer, pgr: Rehearse
) -> None:
    assert app_roles(pg_server) == []
    before = snapshot(pg_server, db)
    result = pgr(db, "indexes", "triggers", "audit", "roles", "--json")
    assert result.code == 0, (result.out, result.err)
    document = result.json()
    assert document["copy"]["kind"] == "scratch database"
    assert document["copy"]["method"] == "template"
    assert document["copy"]["name"].startswith(f"{db.dbname}_rehearse_")
    assert document["kept"] is False
    assert document["verified"] is True and document["passed"] is True
    steps = {s["step"]: s for s in document["steps"]}
    assert list(steps) == ["indexes", "triggers", "audit", "roles"]
    assert steps["indexes"]["operations"] == [f"index public.{n}" for n in RUNBOOK_INDEXES]
    assert steps["indexes"]["strongest_lock"] == "SHARE UPDATE EXCLUSIVE"
    assert all(s["seconds"] > 0 for s in steps.values())
    assert all(p["kind"] not in ("refused", "error") for s in steps.values() for p in s["problems"])
    assert document["checks"] and all(c["passed"] for c in document["checks"])
    # the source is untouched, the scratch database is gone, the server-wide roles too
    assert snapshot(pg_server, db) == before
    assert rows(db, OUR_INDEXES_SQL, (RUNBOOK_INDEXES,)) == []
    assert scratch_databases(pg_server, db) == []
    assert app_roles(pg_server) == []
    assert any("roles are server-wide" in n for n in document["notes"])


def test_dump_copy_when_someone_is_connected_and_the_table(
    db: ConnInfo, pg_server: PgServer, pgr: Rehearse
) -> None:
    before = snapshot(pg_server, db)
    with psycopg.connect(db.conninfo(), autocommit=True):  # the app, connected
        result = pgr(db, "indexes")
    assert result.code == 0, (result.out, result.err)
    text = " ".join(result.out.split())
    assert "scratch database" in text and "dump copy" in text and "(removed)" in text
    assert "indexes" in text and " 15 SHARE UPDATE EXCLUSIVE on" in text  # the table wraps
    assert "public.Message" in text
    assert "clean: 16 of 16 checks passed" in text
    assert snapshot(pg_server, db) == before
    assert scratch_databases(pg_server, db) == []


def test_size_limit_and_createdb_are_one_line_refusals(
    db: ConnInfo, pg_server: PgServer, pgr: Rehearse, login_role: str
) -> None:
    pgr(db, "indexes", "--max-size", "0").one_line_error(
        f"{db.dbname} is", "above the rehearsal's --max-size of 0 MB", "pass --max-size MB",
        "--via neon",
    )  # fmt: skip
    user = db.with_params(user=login_role, password=ROLE_PASSWORD)
    pgr(user, "indexes").one_line_error(f"role {login_role} may not create databases", "CREATEDB")
    assert scratch_databases(pg_server, db) == []


def test_keep_keeps_the_scratch_database(db: ConnInfo, pg_server: PgServer, pgr: Rehearse) -> None:
    result = pgr(db, "indexes", "--keep")
    try:
        assert result.code == 0, (result.out, result.err)
        kept = scratch_databases(pg_server, db)
        assert len(kept) == 1
        assert f"kept scratch database: {kept[0]}" in result.out
        copy = pg_server.dsn(kept[0])
        assert [r[0] for r in rows(copy, OUR_INDEXES_SQL, (RUNBOOK_INDEXES,))] == sorted(
            RUNBOOK_INDEXES
        )
        assert rows(db, OUR_INDEXES_SQL, (RUNBOOK_INDEXES,)) == []
    finally:
        for name in scratch_databases(pg_server, db):
            pg_server.drop_database(name)


def test_constraints_the_data_violates_are_reported_with_exit_1(
    db: ConnInfo, pg_server: PgServer, pgr: Rehearse
) -> None:
    before = snapshot(pg_server, db)
    result = pgr(db, "constraints", "--json")
    assert result.code == 1, result.err
    document = result.json()
    assert document["passed"] is False and document["verified"] is True
    (step,) = document["steps"]
    refused = {p["object"] for p in step["problems"] if p["kind"] == "refused"}
    assert refused == {
        f"constraint public.{table}.{name}" for name, (table, _) in SEEDED_VIOLATIONS.items()
    }
    failed = " ".join(c["name"] for c in document["checks"] if not c["passed"])
    assert all(name in failed for name in SEEDED_VIOLATIONS)
    assert snapshot(pg_server, db) == before
    assert scratch_databases(pg_server, db) == []


# ---- Neon: a branch through the local fake Neon API -----------------------------------------


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeNeon]:
    neon = FakeNeon(op_polls=2)
    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):  # loopback only
        monkeypatch.delenv(proxy, raising=False)
        monkeypatch.delenv(proxy.lower(), raising=False)
    with serve(neon):
        monkeypatch.setenv("NEON_API_KEY", neon.api_key)
        monkeypatch.setenv("NEON_PROJECT_ID", neon.project_id)
        monkeypatch.setenv("NEON_API_URL", neon.base_url)
        yield neon


def branches_left(fake: FakeNeon) -> list[str]:
    return sorted(b["name"] for b in fake.branches.values())


def test_neon_branch_is_used_through_its_uri_and_deleted(
    db: ConnInfo,
    pg_server: PgServer,
    make_db: Callable[..., ConnInfo],
    fake: FakeNeon,
    pgr: Rehearse,
) -> None:
    branch_db = make_db(db.dbname)  # what the new branch's compute serves: a copy of db
    fake.connection_uri = url(branch_db)
    before = snapshot(pg_server, db)
    result = pgr(db, "indexes", "triggers", "--via", "neon", "--json")
    assert result.code == 0, (result.out, result.err)
    document = result.json()
    assert document["copy"]["kind"] == "neon branch"
    assert document["copy"]["name"].startswith("rehearse-")
    assert document["passed"] is True
    # apply ran on the branch's database, not on the source
    assert [r[0] for r in rows(branch_db, OUR_INDEXES_SQL, (RUNBOOK_INDEXES,))] == sorted(
        RUNBOOK_INDEXES
    )
    assert snapshot(pg_server, db) == before
    # created with a compute, then deleted
    created = fake.requests("POST", "/branches")
    assert len(created) == 1 and created[0].status == 201
    assert len(fake.requests("DELETE")) == 1
    assert branches_left(fake) == ["main"]
    assert branch_db.password is None or branch_db.password not in result.out + result.err
    assert fake.api_key not in result.out + result.err


def test_neon_branch_is_deleted_when_the_rehearsal_fails(
    db: ConnInfo,
    make_db: Callable[..., ConnInfo],
    fake: FakeNeon,
    pgr: Rehearse,
    login_role: str,
) -> None:
    # the branch's URI logs in as a role that may not create indexes: apply fails there
    branch_db = make_db(db.dbname)
    fake.connection_uri = url(branch_db.with_params(user=login_role, password=ROLE_PASSWORD))
    failed = pgr(db, "indexes", "--via", "neon", "--json")
    assert failed.code == 1, (failed.out, failed.err)
    document = failed.json()
    assert document["verified"] is False and document["passed"] is False
    (problem,) = document["steps"][0]["problems"]
    assert problem["kind"] == "error"
    assert ROLE_PASSWORD not in failed.out + failed.err
    assert branches_left(fake) == ["main"]

    # a branch whose database cannot be connected to: one line, exit 2, deleted all the same
    fake.connection_uri = url(db.with_params(dbname="no_such_database"))
    pgr(db, "indexes", "--via", "neon").one_line_error("no_such_database")
    assert branches_left(fake) == ["main"]
    assert len(fake.requests("DELETE")) == 2


def _interrupt_at(phrase: str) -> Callable[[str], None]:
    def say(text: str) -> None:
        if text.startswith(phrase):
            raise KeyboardInterrupt  # Ctrl-C while the copy exists

    return say


def test_an_interrupted_rehearsal_removes_its_copy(
    db: ConnInfo, pg_server: PgServer, make_db: Callable[..., ConnInfo], fake: FakeNeon
) -> None:
    steps = select(["indexes"])
    with pytest.raises(KeyboardInterrupt):
        rehearse_library(db, load_profile(None), steps, via="copy", say=_interrupt_at("verifying"))
    assert scratch_databases(pg_server, db) == []

    fake.connection_uri = url(make_db(db.dbname))
    with pytest.raises(KeyboardInterrupt):
        rehearse_library(
            db, load_profile(None), steps, via="neon", say=_interrupt_at("rehearsing indexes")
        )
    assert len(fake.requests("POST", "/branches")) == 1
    assert branches_left(fake) == ["main"]
