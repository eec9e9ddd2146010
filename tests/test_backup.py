"""``pgrunbook backup`` / ``restore`` with the real pg_dump and pg_restore on a real server:
a backup restored into a new database gives the same schema and the same rows, every backup
is recorded (``latest_backup``), a non-empty target is refused, an old pg_dump is refused,
and the password never reaches argv, the output or the JSON."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from pgrunbook.backup import Backup, BackupOptions, latest_backup, plan_backup
from pgrunbook.backup.archive import parse_toc
from pgrunbook.backup.verify import SourceTable, verify_archive
from pgrunbook.cli.backup_cmd import backup, restore
from pgrunbook.cli.main import cli, run
from pgrunbook.connect import connect
from pgrunbook.dsn import ConnInfo
from pgrunbook.reference import Naming
from tests.support import (
    ROLE_PASSWORD,
    PgServer,
    SeededDb,
    Template,
    rows,
    run_psql,
    schema_dump,
    url,
)

# Until cli/main.py registers them (a no-op afterwards).
for _command in (backup, restore):
    if _command.name not in cli.commands:
        cli.add_command(_command)

OLD_BIN = Path("/usr/lib/postgresql/15/bin")
TABLES_SQL = (
    "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgrunbook')"
    " ORDER BY 1, 2"
)
COUNT_SQL = sql.SQL("SELECT count(*) FROM {}")


def exact_counts(info: ConnInfo) -> dict[str, int]:
    """Every table's exact row count (pgrunbook's own schema left out)."""
    out = {}
    for schema, name in rows(info, TABLES_SQL):
        count = rows(info, COUNT_SQL.format(sql.Identifier(str(schema), str(name))))[0][0]
        out[f"{schema}.{name}"] = int(str(count))
    return out


def cli_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, object]]:
    code = run(list(args))
    captured = capsys.readouterr()
    return code, json.loads(captured.out) if captured.out.strip() else {}


def latest(info: ConnInfo, **kwargs: bool) -> Backup | None:
    with connect(info, autocommit=True) as conn:
        return latest_backup(conn, **kwargs)


def test_backup_then_restore_gives_the_same_schema_and_rows(
    seeded_db: SeededDb,
    make_db: Callable[..., ConnInfo],
    pg_server: PgServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source, target = seeded_db.info, make_db()
    file = tmp_path / "app.dump"
    started = time.monotonic()
    code, taken = cli_json(capsys, "backup", "--dsn", url(source), "--output", str(file), "--json")
    assert code == 0, taken
    assert taken["verified"] is True and taken["missing_tables"] == []
    assert taken["format"] == "custom" and taken["size_bytes"] == file.stat().st_size > 0
    assert "-Fc -b" in str(taken["command"]) and "--lock-wait-timeout=30000ms" in str(
        taken["command"]
    )
    tables = taken["tables"]
    assert isinstance(tables, list)
    assert {f"{t['schema']}.{t['name']}" for t in tables} == set(exact_counts(source))
    # The estimates are the planner's: the seeded (analyzed) tables are all non-empty.
    assert all(t["in_backup"] and (t["estimated_rows"] or 0) > 0 for t in tables)

    code, restored = cli_json(capsys, "restore", str(file), "--target", url(target), "--json")
    assert code == 0, restored
    assert "--no-owner --no-acl" in str(restored["command"])
    assert schema_dump(pg_server, target) == schema_dump(pg_server, source)
    assert exact_counts(target) == exact_counts(source)
    restored_tables = restored["tables"]
    assert isinstance(restored_tables, list) and len(restored_tables) == len(tables)
    print(f"backup + restore of the seeded database: {time.monotonic() - started:.2f} s")

    recorded = latest(source)
    assert recorded is not None
    assert (recorded.id, recorded.file) == (taken["backup_id"], str(file.resolve()))
    assert (recorded.format, recorded.verified, recorded.schema_only) == ("custom", True, False)
    assert (recorded.size_bytes, recorded.tables) == (file.stat().st_size, len(tables))
    assert int(recorded.tool_version.split(".")[0]) >= pg_server.major
    assert int(recorded.server_version.split(".")[0]) == pg_server.major
    assert recorded.age.total_seconds() < 60


def test_default_name_and_the_backups_journal(
    db: ConnInfo,
    make_db: Callable[..., ConnInfo],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    assert latest(db) is None  # nothing recorded yet: no table either
    (blob,) = rows(db, "SELECT lo_from_bytea(0, 'large object')")[0]  # -b dumps it
    code, first = cli_json(capsys, "backup", "--dsn", url(db), "--json")
    assert code == 0
    dbname = db.dbname
    assert re.fullmatch(rf"{dbname}_backup_\d{{8}}_\d{{6}}\.dump", str(first["file"]))
    time.sleep(1.05)  # the default name has seconds
    code, second = cli_json(capsys, "backup", "--dsn", url(db), "--json")
    assert code == 0 and second["file"] != first["file"]
    found = latest(db)
    assert found is not None and found.id == second["backup_id"]
    assert len(rows(db, "SELECT id FROM pgrunbook.backups")) == 2

    # The second dump holds pgrunbook.backups (with the first row) but not its data: a
    # restored copy did not take those backups.
    target = make_db()
    assert run(["restore", str(tmp_path / str(second["file"])), "--target", url(target)]) == 0
    assert rows(target, "SELECT count(*) FROM pgrunbook.backups") == [(0,)]
    assert latest(target) is None
    assert rows(target, "SELECT lo_get(%s)", (blob,)) == [(b"large object",)]


def test_schema_only_writes_sql_that_psql_loads(
    db: ConnInfo,
    empty_db: ConnInfo,
    pg_server: PgServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    file = tmp_path / "schema.sql"
    code, taken = cli_json(
        capsys, "backup", "--dsn", url(db), "--schema-only", "--output", str(file), "--json"
    )
    assert code == 0 and taken["verified"] is True and taken["format"] == "plain"
    assert file.read_text().startswith("--\n-- PostgreSQL database dump")
    run_psql(empty_db, file, quiet=True)
    assert schema_dump(pg_server, empty_db) == schema_dump(pg_server, db)
    assert set(exact_counts(empty_db).values()) == {0}
    # A schema file is no way back for the data: latest_backup skips it unless asked.
    assert latest(db) is None
    found = latest(db, include_schema_only=True)
    assert found is not None and found.format == "plain" and found.schema_only
    # ... and restore says what to do with it.
    assert run(["restore", str(file), "--target", url(empty_db)]) == 2
    assert "plain SQL dump" in capsys.readouterr().err


def test_restore_refuses_a_target_with_tables_unless_clean_yes(
    db: ConnInfo,
    make_db: Callable[..., ConnInfo],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    file = tmp_path / "app.dump"
    assert run(["backup", "--dsn", url(db), "--output", str(file)]) == 0
    target = make_db()
    assert run(["restore", str(file), "--target", url(target)]) == 0
    counts = exact_counts(target)
    with psycopg.connect(target.conninfo(), autocommit=True) as conn:
        conn.execute('CREATE TABLE "Marker" (id int)')
        conn.execute('DELETE FROM "Report"')
    capsys.readouterr()

    assert run(["restore", str(file), "--target", url(target)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.strip().count("\n") == 0
    assert "already holds 13 table(s) in public" in err and "--clean --yes" in err
    assert rows(target, 'SELECT count(*) FROM "Report"') == [(0,)]  # nothing changed

    assert run(["restore", str(file), "--target", url(target), "--clean"]) == 2  # no --yes
    assert "needs confirmation" in capsys.readouterr().err
    assert rows(target, 'SELECT count(*) FROM "Report"') == [(0,)]

    assert run(["restore", str(file), "--target", url(target), "--clean", "--yes"]) == 0
    after = exact_counts(target)
    assert after.pop("public.Marker") == 0  # not in the archive: left alone
    assert after == counts


@pytest.mark.skipif(not (OLD_BIN / "pg_dump").exists(), reason="no PostgreSQL 15 client")
def test_an_older_pg_dump_is_refused(
    db: ConnInfo, pg_server: PgServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if pg_server.major <= 15:
        pytest.skip("the server is not newer than the PostgreSQL 15 client")
    file = tmp_path / "old.dump"
    args = ["backup", "--dsn", url(db), "--output", str(file), "--pg-bin", str(OLD_BIN)]
    assert run(args) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert err.startswith(f"error: no pg_dump of version {pg_server.major} or newer")
    assert "found: pg_dump 15." in err and "--pg-bin DIR" in err
    assert not file.exists() and latest(db) is None

    # An 18 archive with a 15 pg_restore: refused as well, in one line.
    assert run(["backup", "--dsn", url(db), "--output", str(file)]) == 0
    capsys.readouterr()
    assert run(["restore", str(file), "--target", url(db), "--pg-bin", str(OLD_BIN)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "pg_restore 15." in err and "cannot read" in err


def test_a_lock_wait_timeout_fails_the_backup_and_leaves_no_file(
    db: ConnInfo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "locked.dump"
    with psycopg.connect(db.conninfo()) as holder:
        holder.execute('LOCK TABLE "Message" IN ACCESS EXCLUSIVE MODE')
        args = ["backup", "--dsn", url(db), "--output", str(file), "--lock-wait-timeout", "200"]
        assert run(args) == 1
        holder.rollback()
    err = capsys.readouterr().err
    assert "pg_dump failed for database" in err and "statement timeout" in err
    assert "a session holds a conflicting lock" in err
    assert not file.exists() and latest(db) is None


@pytest.fixture
def role_db(login_role: str, make_db: Callable[..., ConnInfo]) -> Iterator[Callable[..., ConnInfo]]:
    """Databases the login role may use; login_role is set up first, so it is dropped after
    make_db has dropped the databases that hold its objects and privileges."""

    def factory(template: str | None = None, *, own: bool = False) -> ConnInfo:
        info = make_db(template)
        with psycopg.connect(info.conninfo(), autocommit=True) as conn:
            role = sql.Identifier(login_role)
            if own:
                conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
                    sql.Identifier(info.dbname), role))  # fmt: skip
            else:
                conn.execute(sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(
                    sql.Identifier(info.dbname), role))  # fmt: skip
        return info.with_params(user=login_role, password=ROLE_PASSWORD)

    yield factory


def test_the_password_never_reaches_argv_output_or_json(
    role_db: Callable[..., ConnInfo],
    login_role: str,
    pg_server: PgServer,
    templates: dict[Naming, Template],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pg_server.execute(sql.SQL("GRANT pg_read_all_data TO {}").format(sql.Identifier(login_role)))
    source = role_db(templates[Naming.PRISMA].name)
    file = tmp_path / "secret.dump"
    with connect(source, autocommit=True) as conn:
        plan = plan_backup(conn, source, BackupOptions(output=file))
    assert not any(ROLE_PASSWORD in arg for arg in plan.invocation.argv)
    assert plan.invocation.environment()["PGPASSWORD"] == ROLE_PASSWORD
    assert f"user={login_role}" in plan.invocation.argv[-1]

    outputs = []
    for extra in (["--dry-run"], ["--dry-run", "--json"], ["--json"]):
        code = run(["backup", "--dsn", url(source), "--output", str(file), *extra])
        captured = capsys.readouterr()
        outputs += [captured.out, captured.err]
        assert code == 0, captured.err
    taken = json.loads(outputs[-2])
    assert taken["verified"] is True and taken["recorded"] is True
    assert "PGPASSWORD=****" in taken["command"]

    # Into a database the role owns: restored, with the role's password kept out of sight.
    target = role_db(own=True)
    for extra in (["--dry-run", "--json"], ["--json"]):
        code = run(["restore", str(file), "--target", url(target), *extra])
        captured = capsys.readouterr()
        outputs += [captured.out, captured.err]
        assert code == 0, captured.err
    assert exact_counts(target) == exact_counts(pg_server.dsn(source.dbname))

    # Into one it may not create tables in: pg_restore fails; one line, exit 1, no password.
    denied = role_db()
    with psycopg.connect(pg_server.dsn(denied.dbname).conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("REVOKE CREATE ON DATABASE {} FROM {}").format(
            sql.Identifier(denied.dbname), sql.Identifier(login_role)))  # fmt: skip
    assert run(["restore", str(file), "--target", url(denied)]) == 1
    captured = capsys.readouterr()
    outputs += [captured.out, captured.err]
    assert "pg_restore reported" in captured.err and "permission denied" in captured.err
    assert all(ROLE_PASSWORD not in text for text in outputs)
    pg_server.execute(sql.SQL("REVOKE pg_read_all_data FROM {}").format(sql.Identifier(login_role)))


def test_a_pooled_url_without_a_direct_one_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env
    for var in ("DATABASE_URL", "DIRECT_URL"):
        monkeypatch.delenv(var, raising=False)
    pooled = f"postgresql://app:{ROLE_PASSWORD}@127.0.0.1:1/shop?pgbouncer=true"
    assert run(["backup", "--dsn", pooled, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "connection pooler" in err and "pg_dump needs a direct session" in err
    assert ROLE_PASSWORD not in err and not list(tmp_path.iterdir())


TOC = """;
; Archive created at 2026-11-24 05:07:50 UTC
;     dbname: shop
;     Dumped by pg_dump version: 18.6
;
215; 1259 16445 TABLE public User postgres
216; 1259 16446 TABLE public Order Line postgres
2704; 0 16445 TABLE DATA public User postgres
"""


def test_verification_names_what_the_archive_lacks() -> None:
    toc = parse_toc(TOC)
    assert (toc.dbname, toc.dumped_by_major, toc.schemas) == ("shop", 18, ["public"])
    assert toc.tables == (("public", "User"), ("public", "Order Line"))
    tables = [
        SourceTable("public", "User", True, 500, 'public."User"'),
        SourceTable("public", "Order Line", True, 7, 'public."Order Line"'),  # no data
        SourceTable("audit", "log", True, None, "audit.log"),  # not there at all
    ]
    check = verify_archive(toc, tables)
    assert not check.verified
    assert check.missing == ["public.Order Line", "audit.log"]
