"""``pgrunbook prisma sync`` on a real server, both namings: the migrations it writes replay,
one simple-query string per file as Prisma sends them, into an empty database with the same
schema as the database pgrunbook changed, and every verification passes there; the edited
schema.prisma reads back to the indexes and audit table in the database; a second sync writes
nothing; a rollback gives inverse migrations and takes the edits out; and the evidence for
the layout: a multi-statement query string is one transaction, so a CONCURRENTLY build must
be alone in its file."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import pq

from pgrunbook.catalog import INDOPTION_DESC, load_catalog
from pgrunbook.change import engine
from pgrunbook.change.journal import Journal
from pgrunbook.change.operation import Operation
from pgrunbook.change.refs import ObjectRef, RefKind
from pgrunbook.change.step import Step, StepContext, StepOptions
from pgrunbook.change.steps import STEPS, select
from pgrunbook.change.steps.constraints.fix import fix_constraints
from pgrunbook.change.steps.indexes.wanted import normalize_predicate
from pgrunbook.cli.main import run
from pgrunbook.dsn import ConnInfo
from pgrunbook.prisma.migrations import (
    MIGRATION_FILE,
    Layout,
    Tracked,
    has_meta_command,
    read_header,
    read_recorded,
    rerunnable,
)
from pgrunbook.prisma.model import PrismaSchema
from pgrunbook.prisma.parse import read_schema
from pgrunbook.prisma.sync import AUDIT_MODEL, COMMENT_PREFIX, SyncPlan, plan_sync
from pgrunbook.profile import load_profile
from pgrunbook.reference import Naming
from pgrunbook.reference.write import INIT_MIGRATION, project_dir, rendered_files
from tests.support import APP_ROLES, PgServer, SeededDb, drop_app_roles, schema_dump, url

ROLES = APP_ROLES
CIC = "CONCURRENTLY"


# --- helpers -----------------------------------------------------------------------------


def write_project(naming: Naming, root: Path) -> Path:
    """The reference Prisma project (schema.prisma, the init migration) under ``root``;
    returns its ``prisma/`` folder."""
    base = project_dir(naming)
    for path, text in rendered_files(naming).items():
        target = root / "prisma" / path.relative_to(base)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return root / "prisma"


def context(info: ConnInfo, tmp_path: Path) -> AbstractContextManager[StepContext]:
    options = StepOptions(passwords_file=tmp_path / "roles.env")
    return engine.open_context(info, load_profile(), options=options)


def apply_all(ctx: StepContext) -> None:
    """Every step, with the seeded violations fixed first (the audit table holds the old
    rows), as tests/test_change_engine.py does."""
    engine.apply_steps(ctx, select(["indexes", "triggers", "audit"]))
    fix_constraints(ctx, (), dry_run=False)
    report = engine.apply_steps(ctx, STEPS)
    assert report.refused == 0


def sync(ctx: StepContext, prisma: Path, *, planned: bool = False,
         steps: Sequence[Step] = STEPS) -> SyncPlan:  # fmt: skip
    plan = plan_sync(ctx, read_schema(prisma / "schema.prisma"), prisma / "migrations",
                     planned=planned, steps=steps)  # fmt: skip
    plan.write()
    return plan


def tree(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with its text."""
    return {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*"))
            if p.is_file()}  # fmt: skip


def replay(make_db: Callable[..., ConnInfo], migrations: Path) -> ConnInfo:
    """A new empty database with every migration applied the way Prisma's schema engine
    does it: in folder order, each file sent as one simple-query string."""
    info = make_db()
    with psycopg.connect(info.conninfo(), autocommit=True) as conn:
        for folder in sorted(p for p in migrations.iterdir() if p.is_dir()):
            script = (folder / MIGRATION_FILE).read_text()
            result = conn.pgconn.exec_(script.encode())
            assert result.status != pq.ExecStatus.FATAL_ERROR, (
                folder.name, (result.error_message or b"").decode())  # fmt: skip
    return info


def verify(info: ConnInfo) -> tuple[int, list[dict[str, Any]]]:
    """How many of the runbook's verifications ran, and the failed ones."""
    with engine.open_context(info, load_profile()) as ctx:
        checks = engine.verify_steps(ctx, STEPS)
    return len(checks), [c.to_json() for c in checks if not c.passed]


def pgrunbook_indexes(ctx: StepContext) -> set[str]:
    return {e.object.split(".", 1)[1] for e in Journal(ctx.conn).in_force()
            if e.object.startswith("index ")}  # fmt: skip


def assert_schema_matches_database(schema: PrismaSchema, ctx: StepContext) -> None:
    """Every index pgrunbook made is an @@index of its table's model with the catalog's
    columns, order and directions, or (partial, no partialIndexes) a comment; the AuditLog
    model holds exactly the audit table's columns and indexes."""
    catalog = load_catalog(ctx.conn, ctx.schema)
    ours = pgrunbook_indexes(ctx)
    assert len(ours) == 18  # the runbook's 15 and the audit table's 3
    for table in catalog:
        for index in (i for i in table.indexes if i.name in ours):
            model = schema.model_for_table(table.name)
            assert model is not None, table.name
            attr = next((a for a in model.indexes if a.map == index.name), None)
            if index.predicate is not None:
                assert attr is None
                assert (
                    f"{COMMENT_PREFIX}{index.name}: partial"
                    in schema.texts[model.span.path if model.span and model.span.path else Path()]
                )
                continue
            assert attr is not None and attr.kind == "index", index.name
            read = [(model.column(f.name), f.sort == "Desc") for f in attr.fields]
            wanted = [(table.column_by_num[n].name, bool(o & INDOPTION_DESC))
                      for n, o in zip(index.attnums, index.options, strict=True)]  # fmt: skip
            assert read == wanted, index.name
    audit = next(t for t in catalog if t.name in ("AuditLog", "audit_logs"))
    model = schema.model_for_table(audit.name)
    assert model is not None and model.name == AUDIT_MODEL
    assert [f.db_name for f in model.fields] == [c.name for c in audit.columns]
    assert {i.map for i in model.indexes} == {i.name for i in audit.indexes if i.name in ours}


# --- the evidence for the layout ----------------------------------------------------------


def test_a_multi_statement_query_string_is_one_transaction(empty_db: ConnInfo) -> None:
    """What Prisma's schema engine does with a migration file (one simple query): two
    statements run as one implicit transaction, so CREATE INDEX CONCURRENTLY fails there and
    takes the statement before it down too; alone in its string it runs."""
    with psycopg.connect(empty_db.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE TABLE t (a int)")
        both = conn.pgconn.exec_(
            b"CREATE TABLE u (b int);\nCREATE INDEX CONCURRENTLY t_a ON t (a);"
        )
        assert both.status == pq.ExecStatus.FATAL_ERROR
        assert both.error_field(pq.DiagnosticField.SQLSTATE) == b"25001"
        assert b"cannot run inside a transaction block" in (both.error_message or b"")
        assert conn.execute("SELECT to_regclass('u')").fetchone() == (None,)  # rolled back
        alone = conn.pgconn.exec_(
            b"-- pgrunbook apply indexes 0\nCREATE INDEX CONCURRENTLY IF NOT EXISTS t_a ON t (a);\n"
        )
        assert alone.status == pq.ExecStatus.COMMAND_OK, alone.error_message
        drop = conn.pgconn.exec_(b"SELECT 1;\nDROP INDEX CONCURRENTLY IF EXISTS t_a;")
        assert drop.error_field(pq.DiagnosticField.SQLSTATE) == b"25001"


# --- the round trip -----------------------------------------------------------------------


@pytest.fixture
def seeded(seeded_db: SeededDb, pg_server: PgServer) -> Iterator[SeededDb]:
    yield seeded_db
    drop_app_roles(pg_server, seeded_db.info)


def test_sync_migrations_replay_to_the_applied_schema(
    seeded: SeededDb, pg_server: PgServer, make_db: Callable[..., ConnInfo], tmp_path: Path
) -> None:
    info, naming, _ = seeded
    prisma = write_project(naming, tmp_path)
    migrations = prisma / "migrations"
    with context(info, tmp_path) as ctx:
        apply_all(ctx)
        plan = sync(ctx, prisma)
        # one folder per concurrent build, alone; no psql meta-command, no password
        names = sorted(p.name for p in migrations.iterdir() if p.is_dir())
        assert names[0] == INIT_MIGRATION and names[1:] == [m.name for m in plan.migrations]
        concurrent = [m for m in plan.migrations if CIC in m.render()]
        assert len(concurrent) == 18
        assert all(len(m.statements) == 1 and m.render().count(CIC) == 2 for m in concurrent)
        for m in plan.migrations:
            text = m.render()
            assert "PASSWORD" not in text and not has_meta_command(text)
            assert read_header(text) == ("apply", m.step, m.objects)
        assert [
            m.name.split("_pgrunbook_")[1] for m in plan.migrations if CIC not in m.render()
        ] == ["triggers", "audit", "roles", "constraints", "constraints_validate"]
        assert plan.resolve_commands()[0] == (
            f"npx prisma migrate resolve --applied {plan.migrations[0].name}"
        )
        # the edited schema reads back to what the database has
        assert_schema_matches_database(read_schema(prisma / "schema.prisma"), ctx)
        # a second sync writes nothing
        before = tree(prisma)
        again = plan_sync(ctx, read_schema(prisma / "schema.prisma"), migrations)
        assert not again.changes and again.write() == [] and again.warnings == []
        assert tree(prisma) == before
    applied = schema_dump(pg_server, info)

    # replayed where the app roles exist (the same cluster): grants included
    with_roles = replay(make_db, migrations)
    try:
        assert schema_dump(pg_server, with_roles) == applied
        assert "GRANT SELECT ON TABLE" in applied
        ran, failed = verify(with_roles)
        assert failed == [] and ran == verify(info)[0] > 40
    finally:
        pg_server.drop_database(with_roles.dbname)
    # replayed where they do not (Prisma's shadow database): the grants are skipped
    drop_app_roles(pg_server, info)
    without = replay(make_db, migrations)
    assert schema_dump(pg_server, without) == schema_dump(pg_server, info)


def test_rollback_then_sync_writes_the_inverse_and_takes_the_edits_out(
    db: ConnInfo, pg_server: PgServer, make_db: Callable[..., ConnInfo], tmp_path: Path
) -> None:
    prisma = write_project(Naming.PRISMA, tmp_path)
    migrations = prisma / "migrations"
    original = (prisma / "schema.prisma").read_text()
    dump_before = schema_dump(pg_server, db)
    try:
        with context(db, tmp_path) as ctx:
            apply_all(ctx)
            forward = sync(ctx, prisma)
            written = tree(migrations)

            engine.rollback_steps(ctx, select(["indexes"]))
            undo = sync(ctx, prisma)
            assert {m.kind for m in undo.migrations} == {"rollback"}
            assert len(undo.migrations) == 15 and all(
                len(m.statements) == 1 and "DROP INDEX CONCURRENTLY IF EXISTS" in m.render()
                for m in undo.migrations)  # fmt: skip
            schema = read_schema(prisma / "schema.prisma")
            maps = {i.map for m in schema.models for i in m.indexes}
            assert not any(m.startswith("idx_") and "auditlog" not in m for m in maps if m)
            assert COMMENT_PREFIX not in original and COMMENT_PREFIX not in "".join(
                schema.texts.values()
            )
            assert schema.model(AUDIT_MODEL) is not None

            engine.apply_steps(ctx, select(["indexes"]))  # back again: new forward folders
            redo = sync(ctx, prisma)
            assert [m.kind for m in redo.migrations] == ["apply"] * 15

            engine.rollback_steps(ctx, STEPS)
            last = sync(ctx, prisma)
            kinds = [(m.kind, m.step) for m in last.migrations]
            assert set(kinds) == {
                ("rollback", s) for s in ("indexes", "constraints", "roles", "audit", "triggers")
            }
            assert all(len(m.statements) == 1 for m in last.migrations if CIC in m.render())
            # what existed is never changed: every earlier folder is as it was written
            now = tree(migrations)
            assert {k: now[k] for k in written} == written
            assert (prisma / "schema.prisma").read_text() == original
            assert not plan_sync(ctx, read_schema(prisma / "schema.prisma"), migrations).changes
        assert forward.migrations and schema_dump(pg_server, db) == dump_before
        replayed = replay(make_db, migrations)
        assert schema_dump(pg_server, replayed) == dump_before
    finally:
        drop_app_roles(pg_server, db)


def test_planned_then_apply_then_sync_writes_nothing_more(
    db: ConnInfo, make_db: Callable[..., ConnInfo], pg_server: PgServer, tmp_path: Path
) -> None:
    steps = select(["indexes", "triggers", "audit"])
    prisma = write_project(Naming.PRISMA, tmp_path)
    with context(db, tmp_path) as ctx:
        planned = sync(ctx, prisma, planned=True, steps=steps)
        assert planned.migrations and planned.schema_texts
        assert not plan_sync(ctx, read_schema(prisma / "schema.prisma"), prisma / "migrations",
                             planned=True, steps=steps).changes  # fmt: skip
        engine.apply_steps(ctx, steps)
        after = plan_sync(ctx, read_schema(prisma / "schema.prisma"), prisma / "migrations",
                          steps=steps)  # fmt: skip
        assert not after.changes, [m.name for m in after.migrations] + [after.diff]
    replayed = replay(make_db, prisma / "migrations")
    assert schema_dump(pg_server, replayed) == schema_dump(pg_server, db)


def test_partial_indexes_get_where_raw_when_the_preview_feature_is_on(
    db: ConnInfo, tmp_path: Path
) -> None:
    prisma = write_project(Naming.PRISMA, tmp_path)
    path = prisma / "schema.prisma"
    preview = 'provider        = "prisma-client-js"\n  previewFeatures = ["partialIndexes"]\n'
    path.write_text(path.read_text().replace('provider = "prisma-client-js"\n', preview))
    with context(db, tmp_path) as ctx:
        engine.apply_steps(ctx, select(["indexes"]))
        sync(ctx, prisma, steps=select(["indexes"]))
        schema = read_schema(path)
        catalog = load_catalog(ctx.conn, ctx.schema)
        partial = {i.name: i.predicate for i in catalog.indexes() if i.predicate}
        assert len(partial) == 6
        for name, predicate in partial.items():
            attr = next(a for m in schema.models for a in m.indexes if a.map == name)
            assert normalize_predicate(attr.where) == normalize_predicate(predicate)
        assert COMMENT_PREFIX not in path.read_text()


# --- the CLI ------------------------------------------------------------------------------


def test_cli_dry_run_prints_files_and_diff_and_writes_nothing(
    db: ConnInfo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prisma = write_project(Naming.PRISMA, tmp_path)
    with context(db, tmp_path) as ctx:
        engine.apply_steps(ctx, select(["indexes"]))
    before = tree(prisma)
    base = ["prisma", "sync", "--prisma-schema", str(prisma / "schema.prisma"), "--dsn", url(db)]
    assert run([*base, "--dry-run"]) == 0
    out, err = capsys.readouterr()
    assert tree(prisma) == before and "nothing was written" in err
    assert out.count("==> ") == 15 and out.count("migration.sql (new)") == 15
    assert (
        '+  @@index([roomId, createdAt(sort: Desc)], map: "idx_message_room_created_desc")' in out
    )
    assert run([*base, "--dry-run", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["dry_run"] is True and document["written"] == []
    assert len(document["migrations"]) == len(document["resolve"]) == 15
    assert tree(prisma) == before

    assert run(base) == 0
    out, _ = capsys.readouterr()
    assert out.count("npx prisma migrate resolve --applied ") == 15
    assert f"--schema {prisma / 'schema.prisma'}" in out
    assert run(base) == 0
    assert "nothing to write" in capsys.readouterr().out


def test_cli_one_line_errors(
    db: ConnInfo, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    assert run(["prisma", "sync", "--dsn", url(db)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: no Prisma schema found") and err.count("\n") == 1
    (tmp_path / "prisma").mkdir()
    (tmp_path / "prisma" / "schema.prisma").write_text(
        rendered_files(Naming.PRISMA)[project_dir(Naming.PRISMA) / "schema.prisma"]
    )
    assert run(["prisma", "sync", "--dsn", url(db)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: no Prisma migrations folder at ")
    assert err.count("\n") == 1


# --- rendering, without a server ----------------------------------------------------------


def _op(sql: str, *, ref: ObjectRef | None = None, obj: str = "x", step: str = "roles",
        transactional: bool = True) -> Operation:  # fmt: skip
    return Operation(step=step, object=obj, sql=sql, reverse_sql="SELECT 1",
                     transactional=transactional, ref=ref)  # fmt: skip


def test_rerunnable_forms() -> None:
    grant = rerunnable(_op('GRANT SELECT ON TABLE "public"."Gift" TO "app_user"'), ROLES)
    assert grant.sql == 'GRANT SELECT ON TABLE "public"."Gift" TO "app_user"'
    assert grant.guard == "EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'app_user')"
    default = rerunnable(_op(
        'ALTER DEFAULT PRIVILEGES FOR ROLE "neondb_owner" IN SCHEMA "public" GRANT SELECT ON '
        'TABLES TO "app_readonly"'), ROLES)  # fmt: skip
    assert default.sql == (
        'ALTER DEFAULT PRIVILEGES IN SCHEMA "public" GRANT SELECT ON TABLES TO "app_readonly"'
    )
    connect = rerunnable(_op('REVOKE CONNECT ON DATABASE "shop" FROM "app_admin"'), ROLES)
    assert connect.sql == (
        "EXECUTE format('REVOKE CONNECT ON DATABASE %I FROM %I', current_database(), 'app_admin')"
    )
    public = rerunnable(_op('REVOKE CREATE ON SCHEMA "public" FROM PUBLIC'), ROLES)
    assert public.guard is None
    role = rerunnable(_op("CREATE ROLE \"app_user\" LOGIN PASSWORD '********'",
                          ref=ObjectRef(RefKind.ROLE, "app_user")), ROLES)  # fmt: skip
    assert role.sql is None and role.note is not None and "pgrunbook apply roles" in role.note
    function = rerunnable(_op('CREATE FUNCTION "public"."f"() RETURNS trigger AS $$x$$'), ROLES)
    assert function.sql == 'CREATE OR REPLACE FUNCTION "public"."f"() RETURNS trigger AS $$x$$'
    with pytest.raises(ValueError, match="meta-command"):
        rerunnable(_op("SELECT 1 AS x \\gset"), ROLES)
    for sql_text in (
        "CHECK (email ~ E'^[a-z]+@[a-z]+\\\\.[a-z]{2,}$')",
        "SELECT '\\d', 'it''s \\'",
        'SELECT 1 AS "a\\""" -- \\gset',
        "DO $x$ BEGIN RAISE '\\'; END $x$",
    ):
        assert not has_meta_command(sql_text), sql_text
    assert has_meta_command("SELECT E'\\'' \\gexec")
    with pytest.raises(ValueError, match="meta-command"):
        rerunnable(_op("SELECT 1;\n\\if :x\nSELECT 2;\n\\endif"), ROLES)


def test_layout_puts_each_concurrent_statement_alone_and_reads_back() -> None:
    from datetime import datetime

    index = _op('CREATE INDEX CONCURRENTLY IF NOT EXISTS "i" ON "public"."t" ("a")',
                ref=ObjectRef(RefKind.INDEX, "Idx-One", "public"), obj="index public.i",
                step="audit", transactional=False)  # fmt: skip
    table = _op('CREATE TABLE "public"."t" ("a" int)', ref=ObjectRef(RefKind.TABLE, "t", "public"),
                obj="table public.t", step="audit")  # fmt: skip
    ops = [table, index, index]
    layout = Layout(datetime(2026, 2, 1, 12, 0, 59))
    layout.add_step(
        "audit",
        "apply",
        [rerunnable(o, ROLES) for o in ops],
        [Tracked(o.object + str(n), o.definition_hash) for n, o in enumerate(ops)],
    )
    names = [m.name for m in layout.migrations]
    assert names == ["20260201120059_pgrunbook_audit",
                     "20260201120100_pgrunbook_audit_01_idx_one",
                     "20260201120101_pgrunbook_audit_02_idx_one"]  # fmt: skip
    first = layout.migrations[0].render()
    assert 'IF to_regclass(\'"public"."t"\') IS NULL THEN' in first
    header = read_header(first)
    assert header is not None and header[2] == (Tracked("table public.t0", table.definition_hash),)
    assert read_header("-- just a comment\nSELECT 1;") is None


def test_recorded_migrations_are_read_in_prisma_order(tmp_path: Path) -> None:
    for name, kind in (("20260301000000_pgrunbook_x", "rollback"),
                       ("20260201000000_pgrunbook_x", "apply"),
                       ("20260101000000_init", None)):  # fmt: skip
        (tmp_path / name).mkdir()
        head = f"-- pgrunbook {kind} x 0123456789abcdef\n" if kind else ""
        line = '-- pgrunbook-object: 0123456789abcdef "index public.i\\nx"\n'
        (tmp_path / name / MIGRATION_FILE).write_text(head + line + "SELECT 1;\n")
    recorded = read_recorded(tmp_path)
    assert [(r.kind, r.objects[0].object) for r in recorded] == [
        ("apply", "index public.i\nx"),
        ("rollback", "index public.i\nx"),
    ]


def test_cli_rollback_writes_the_inverse_migrations_itself(
    db: ConnInfo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """In Prisma mode, `pgrunbook rollback` itself writes the inverse of the migrations
    `prisma sync` wrote, and takes the schema edits out; --no-prisma-sync only says how."""
    prisma = write_project(Naming.PRISMA, tmp_path)
    schema_file = str(prisma / "schema.prisma")
    original = (prisma / "schema.prisma").read_text()
    dsn = ["--dsn", url(db)]
    with context(db, tmp_path) as ctx:
        engine.apply_steps(ctx, select(["indexes", "triggers"]))
    assert run(["prisma", "sync", "--prisma-schema", schema_file, *dsn]) == 0
    forward = tree(prisma / "migrations")
    capsys.readouterr()

    args = ["rollback", "triggers", "--yes", "--prisma-schema", schema_file, *dsn]
    assert run([*args, "--no-prisma-sync"]) == 0
    assert "run 'pgrunbook prisma sync'" in capsys.readouterr().err
    assert tree(prisma / "migrations") == forward  # told, not written

    assert (
        run(["rollback", "indexes", "--yes", "--json", "--prisma-schema", schema_file, *dsn]) == 0
    )
    document = json.loads(capsys.readouterr().out)
    written = document["prisma_written"]
    assert len([p for p in written if "_pgrunbook_rollback_" in p]) == 16  # 15 + triggers
    now = tree(prisma / "migrations")
    assert {k: now[k] for k in forward} == forward
    assert (prisma / "schema.prisma").read_text() == original
    with context(db, tmp_path) as ctx:
        assert not plan_sync(
            ctx, read_schema(prisma / "schema.prisma"), prisma / "migrations"
        ).changes
