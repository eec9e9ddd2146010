"""sql export: the runbook's psql scripts, run with the real psql against the seeded database."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import psycopg
import pytest
from psycopg import sql

from pgrunbook import __version__
from pgrunbook.change.step import StepContext
from pgrunbook.change.steps import STEPS
from pgrunbook.discover import discover
from pgrunbook.dsn import ConnInfo
from pgrunbook.errors import PgRunbookError
from pgrunbook.profile import load_profile
from pgrunbook.reference import Naming
from pgrunbook.serverinfo import probe
from pgrunbook.sqlexport import (
    ScriptExistsError,
    cleanup,
    export_scripts,
    render_scripts,
    script_names,
)
from pgrunbook.sqlexport.write import RENDERERS
from tests.support import (
    SeededDb,
    Template,
    execute,
    leave_failed_unique_build,
    rows,
    run_psql,
    scalar,
)

NAMINGS: Final = [("db", Naming.PRISMA), ("snake_db", Naming.SNAKE)]
EXPECTED_FILES: Final = [
    "01_discovery.sql",
    "02_performance_indexes.sql",
    "03_updated_at_trigger.sql",
    "04_audit_logs.sql",
    "05_security_permissions.sql",
    "06_constraints_validation.sql",
    "07_maintenance_operations.sql",
    "08_cleanup_jobs.sql",
    "09_monitoring_queries.sql",
    "10_explain_analyze_templates.sql",
    "rollback_02_performance_indexes.sql",
    "rollback_03_updated_at_trigger.sql",
    "rollback_04_audit_logs.sql",
    "rollback_05_security_permissions.sql",
    "rollback_06_constraints_validation.sql",
    "rollback_all.sql",
]
GENERATED_AT: Final = datetime(2026, 1, 4, 9, 30, tzinfo=UTC)
# A title psql \echo'ed before a result: "3. Unused indexes ...", "DRY RUN: ...", "Top 10 ..."
_TITLE: Final = re.compile(r"^(\d+\. |DRY RUN|Top \d+ )")
_RULE: Final = re.compile(r"^-+(\+-+)*$")


@contextmanager
def context(info: ConnInfo) -> Iterator[StepContext]:
    with psycopg.connect(info.conninfo(), autocommit=True) as conn:
        yield StepContext(conn, "public", probe(conn, info=info), load_profile())


def export(info: ConnInfo, directory: Path) -> dict[str, Path]:
    with context(info) as ctx:
        paths = export_scripts(ctx, directory, generated_at=GENERATED_AT)
    return {p.name: p for p in paths}


def psql(info: ConnInfo, path: Path) -> str:
    """Run ``path`` as the header says; its output (the run must succeed)."""
    return run_psql(info, path).stdout


def results(output: str) -> dict[str, list[dict[str, str]]]:
    """psql's aligned results, each under the title \\echo'ed before it (a title with
    several results keeps the last)."""
    lines = output.splitlines()
    out: dict[str, list[dict[str, str]]] = {}
    title = ""
    i = 0
    while i < len(lines):
        line = lines[i]
        if i + 1 < len(lines) and _RULE.match(lines[i + 1]):
            header = [h.strip() for h in line.split("|")]
            i += 2
            found = []
            while not re.match(r"^\(\d+ rows?\)$", lines[i]):
                # only the last column (query text) may hold a |
                cells = (c.strip() for c in lines[i].split("|", len(header) - 1))
                found.append(dict(zip(header, cells, strict=True)))
                i += 1
            out[title] = found
        elif _TITLE.match(line):
            title = line
        i += 1
    return out


def result(found: dict[str, list[dict[str, str]]], prefix: str) -> list[dict[str, str]]:
    """The one result whose title starts with ``prefix`` ("3.", "DRY RUN")."""
    [key] = [title for title in found if title.startswith(prefix)]
    return found[key]


def table_rows(info: ConnInfo) -> dict[str, int]:
    """Every table of schema public and its row count."""
    out = {}
    with psycopg.connect(info.conninfo(), autocommit=True) as conn:
        names = conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind = 'r'"
        ).fetchall()
        for (name,) in names:
            count = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier("public", name))
            row = conn.execute(count).fetchone()
            assert row is not None
            out[name] = int(row[0])
    return out


# -- the files -----------------------------------------------------------------------------


def test_export_writes_every_script_with_its_header(db: ConnInfo, tmp_path: Path) -> None:
    directory = tmp_path / "new" / "sql"  # created, parents too
    with context(db) as ctx:
        paths = export_scripts(ctx, directory, generated_at=GENERATED_AT)
        rendered = render_scripts(ctx, generated_at=GENERATED_AT)

    assert [p.name for p in paths] == EXPECTED_FILES
    # VACUUM (07) and batched DELETEs (08) cannot run in one transaction, nor can the steps'
    # scripts that say so (CREATE/DROP INDEX CONCURRENTLY), nor rollback_all with them
    steps = [s for s in STEPS if not s.transactional_script]
    unwrapped = {
        "07_maintenance_operations.sql",
        "08_cleanup_jobs.sql",
        "rollback_all.sql",
        *(f"{s.script_name}.sql" for s in steps),
        *(f"rollback_{s.script_name}.sql" for s in steps),
    }
    assert "02_performance_indexes.sql" in unwrapped
    assert sorted(p.name for p in directory.iterdir()) == sorted(EXPECTED_FILES)
    assert list(rendered) == EXPECTED_FILES == script_names()
    for path in paths:
        text = path.read_text()
        assert text == rendered[path.name]
        assert text.startswith(f"-- {path.name}: ")
        head = text.split("\n\n\\set ON_ERROR_STOP on\n", 1)[0]
        assert (
            f"-- Generated by pgrunbook {__version__} for database {db.dbname!r}, schema "
            "'public', on 2026-01-04 09:30 UTC." in head
        )
        assert f'-- Run it: psql -X -v ON_ERROR_STOP=1 -f {path.name} "$DIRECT_URL"' in head
        assert "-- Changes: " in head and "-- Undo: " in head
        wrapper = "without a transaction wrapper" in head
        assert wrapper == (path.name in unwrapped), path.name
    later = {
        "07_maintenance_operations.sql": "pgrunbook maintain, pgrunbook run weekly|monthly",
        "08_cleanup_jobs.sql": "pgrunbook cleanup (dry run by default",
        "10_explain_analyze_templates.sql": "pgrunbook explain (--baseline FILE before",
    }
    for name, command in later.items():
        assert command in rendered[name].split("\\set ON_ERROR_STOP on")[0], name
    # rollback_all is every step's rollback, constraints first, indexes last
    rollback_all = rendered["rollback_all.sql"]
    positions = [
        rollback_all.index(f"-- ---- rollback_{n}.sql")
        for n in ("06_constraints_validation", "05_security_permissions", "04_audit_logs",
                  "03_updated_at_trigger", "02_performance_indexes")
    ]  # fmt: skip
    assert positions == sorted(positions)


def test_refuses_to_overwrite_without_overwrite(db: ConnInfo, tmp_path: Path) -> None:
    export(db, tmp_path)
    mine = tmp_path / "09_monitoring_queries.sql"
    mine.write_text("-- my edits\n")
    with context(db) as ctx:
        with pytest.raises(ScriptExistsError) as refused:
            export_scripts(ctx, tmp_path)
        assert str(refused.value) == (
            f"{tmp_path / '01_discovery.sql'} already exists (and 15 more of the scripts); "
            "pass --overwrite to replace the scripts, or export to another directory"
        )
        assert mine.read_text() == "-- my edits\n"  # nothing was written

        (tmp_path / "not-a-dir").write_text("")
        with pytest.raises(PgRunbookError, match="not-a-dir is not a directory"):
            export_scripts(ctx, tmp_path / "not-a-dir")

        export_scripts(ctx, tmp_path, overwrite=True)
    assert mine.read_text().startswith("-- 09_monitoring_queries.sql: ")


# -- 01 discovery ---------------------------------------------------------------------------


def test_discovery_shows_the_seeded_anomalies(seeded_db: SeededDb, tmp_path: Path) -> None:
    info, naming, manifest = seeded_db
    table, col = naming.table, naming.column
    # A clone starts without statistics: ANALYZE counts the dead tuples the seed left in
    # Wallet (its dead-tuple anomaly); and a failed build leaves an INVALID index.
    execute(info, sql.SQL("ANALYZE {}").format(sql.Identifier(table("Wallet"))).as_string())
    leave_failed_unique_build(info)
    before = table_rows(info)
    scripts = export(info, tmp_path)

    output = psql(info, scripts["01_discovery.sql"])
    found = results(output)

    # dead tuples: the seed's, in Wallet (checked against discover's check below)
    [dead] = result(found, "2.")
    assert dead["table"] == table(manifest["dead_tuples"]["table"])
    assert 10 < float(dead["dead_percent"]) < 50 and dead["severity"] == "warning"
    # the orphans the seed injected, and the clean inferred relation
    orphans = {r["relation"]: int(r["orphan_rows"]) for r in result(found, "6.")}
    assert orphans == {
        f"public.{table('GiftSend')}({col('roomId')}) -> public.{table('Room')}(id)": manifest[
            "orphan_gift_sends"
        ],
        f"public.{table('Message')}({col('roomId')}) -> public.{table('Room')}(id)": manifest[
            "orphan_messages"
        ],
        f"public.{table('Notification')}({col('userId')}) -> public.{table('User')}(id)": manifest[
            "orphan_notifications"
        ],
        f"public.{table('Report')}({col('messageId')}) -> public.{table('Message')}(id)": 0,
    }
    assert result(found, "4.") == [
        {
            "index": "account_email_key",
            "table": "account",
            "build_in_progress": "f",
            "size": "0 bytes",  # the build failed before writing anything
            "definition": "CREATE UNIQUE INDEX account_email_key ON public.account USING btree "
            "(email)",
        }
    ]
    assert [r["convention"] for r in result(found, "8.")] == (
        ["camelCase", "camelCase"] if naming is Naming.PRISMA else ["snake_case", "snake_case"]
    )
    assert {r["index"] for r in result(found, "7.")} >= {
        f"{table('Message')}_pkey",
        "account_email_key",
    }
    assert result(found, "1.")[0]["table"] == table("Message")  # largest first
    # the same verdicts as discover's checks
    report = discover(info, only=("dead_tuples", "missing_indexes", "unused_indexes", "naming"))
    [bloated] = report.by_check("dead_tuples")
    assert bloated.object == f"public.{dead['table']}"
    assert bloated.details["dead_tuples"] == int(dead["dead_tuples"])
    assert bloated.details["live_tuples"] == int(dead["live_tuples"])
    missing = {
        f"{f.object}({', '.join(f.details['columns'])})" for f in report.by_check("missing_indexes")
    }
    assert {r["relation"].split(" -> ")[0] for r in result(found, "5.")} == missing
    assert f"public.{table('GiftSend')}({col('roomId')})" in missing  # inferred, seeded
    assert len(missing) == len(manifest["foreign_keys_without_index"]) + 1  # + Report.messageId
    unused = {f.object for f in report.by_check("unused_indexes")}
    assert {f"public.{r['index']}" for r in result(found, "3.")} == unused
    assert f"public.{manifest['unused_indexes'][0]}" in unused
    [convention] = report.by_check("naming")
    counts = convention.details["columns"]["counts"]
    columns = next(r for r in result(found, "8.") if r["kind"] == "columns")
    assert {k: int(columns[k]) for k in ("camel", "snake", "neutral", "other")} == counts
    # read only
    assert table_rows(info) == before


def test_names_cannot_break_out_of_comments_or_echo(empty_db: ConnInfo, tmp_path: Path) -> None:
    evil = "evil\nDROP TABLE keep; --\\echo '"
    execute(
        empty_db,
        sql.SQL(
            "CREATE TABLE keep (id int PRIMARY KEY); INSERT INTO keep VALUES (1);"
            "CREATE TABLE {} (id int PRIMARY KEY, {} int);"
        )
        .format(sql.Identifier(evil), sql.Identifier("keepId"))
        .as_string(),
    )
    with context(empty_db) as ctx:
        for renderer in RENDERERS:
            body = renderer.render(ctx)
            path = tmp_path / f"{renderer.name}.sql"
            path.write_text(body.text)
            psql(empty_db, path)
            assert scalar(empty_db, "SELECT count(*) FROM keep") == 1, renderer.name
    # the inferred relation evil(keepId) -> keep(id) reached the orphan comments, safely
    assert "-- DROP TABLE keep" in (tmp_path / "01_discovery.sql").read_text()


# -- 07 maintenance -------------------------------------------------------------------------


def _vacuumed(info: ConnInfo) -> dict[str, tuple[int, int]]:
    found = rows(
        info,
        "SELECT relname, vacuum_count, analyze_count FROM pg_stat_user_tables "
        "WHERE schemaname = 'public'",
    )
    return {str(r[0]): (int(str(r[1])), int(str(r[2]))) for r in found}


def test_maintenance_analyzes_and_vacuums_the_high_traffic_tables(
    seeded_db: SeededDb, tmp_path: Path
) -> None:
    info, naming, _ = seeded_db  # a fresh clone: no statistics yet
    scripts = export(info, tmp_path)
    before = table_rows(info)
    assert {counts for counts in _vacuumed(info).values()} == {(0, 0)}

    output = psql(info, scripts["07_maintenance_operations.sql"])

    busy = {naming.table(t) for t in ("Message", "Notification", "GiftSend")}
    after = _vacuumed(info)
    assert {t for t, (vacuums, _) in after.items() if vacuums} == busy
    assert all(analyzes >= 1 for _, analyzes in after.values())
    assert table_rows(info) == before
    found = results(output)
    assert result(found, "3. Unused indexes")  # the seeded unused index, among others
    # the vacuumed tables are clean; the seed's dead tuples in Wallet (not vacuumed) remain
    assert [r["table"] for r in result(found, "4.")] == [naming.table("Wallet")]


# -- 08 cleanup -----------------------------------------------------------------------------


def test_cleanup_dry_run_counts_what_the_retention_check_counts(
    seeded_db: SeededDb, tmp_path: Path
) -> None:
    info, _, manifest = seeded_db
    scripts = export(info, tmp_path)
    before = table_rows(info)

    output = psql(info, scripts["08_cleanup_jobs.sql"])

    dry_run = {r["policy"]: int(r["would_delete"]) for r in result(results(output), "DRY RUN")}
    facts = discover(info, only=("retention",)).facts["retention"]
    assert dry_run == {fact["policy"]: fact["count"] for fact in facts}
    assert dry_run == {
        "expired_refresh_tokens": manifest["refresh_tokens_expired_over_7_days"],
        "read_notifications": manifest["read_notifications_over_30_days"],
    }
    assert table_rows(info) == before  # nothing deleted
    assert "DELETE 0" not in output and re.search(r"^DELETE", output, re.M) is None


def _uncommented(text: str) -> str:
    """The script with its commented-out DELETE statements uncommented."""
    return re.sub(r"^-- (DELETE FROM | WHERE ctid|   AND )", r"\1", text, flags=re.M)


def test_uncommented_deletes_remove_one_batch_per_run(
    db: ConnInfo, templates: dict[Naming, Template], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = templates[Naming.PRISMA].report.anomalies
    expired = manifest["refresh_tokens_expired_over_7_days"]
    read = manifest["read_notifications_over_30_days"]
    monkeypatch.setattr(cleanup, "BATCH_ROWS", 500)
    before = table_rows(db)
    scripts = export(db, tmp_path)
    path = tmp_path / "delete.sql"
    path.write_text(_uncommented(scripts["08_cleanup_jobs.sql"].read_text()))

    first = psql(db, path)
    assert re.findall(r"^DELETE \d+$", first, re.M) == ["DELETE 500", "DELETE 500"]
    second = psql(db, path)
    assert re.findall(r"^DELETE \d+$", second, re.M) == [
        f"DELETE {expired - 500}",
        f"DELETE {read - 500}",
    ]
    third = psql(db, path)
    assert re.findall(r"^DELETE \d+$", third, re.M) == ["DELETE 0", "DELETE 0"]
    dry_run = {r["policy"]: int(r["would_delete"]) for r in result(results(third), "DRY RUN")}
    assert dry_run == {"expired_refresh_tokens": 0, "read_notifications": 0}
    after = table_rows(db)
    assert after == {
        **before,
        "RefreshToken": before["RefreshToken"] - expired,
        "Notification": before["Notification"] - read,
    }


# -- 09 monitoring --------------------------------------------------------------------------


class Waiter:
    """Runs one statement in a thread; it is expected to wait for a lock."""

    def __init__(self, conn: psycopg.Connection[Any], statement: str) -> None:
        self.error: psycopg.Error | None = None
        self.thread = threading.Thread(target=self._run, args=(conn, statement), daemon=True)
        self.thread.start()

    def _run(self, conn: psycopg.Connection[Any], statement: str) -> None:
        try:
            conn.execute(statement.encode())
        except psycopg.Error as exc:
            self.error = exc


def _wait_for_lock(info: ConnInfo, pid: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        query = "SELECT count(*) FROM pg_stat_activity WHERE pid = %s AND wait_event_type = 'Lock'"
        if scalar(info, query, (pid,)) == 1:
            return
        time.sleep(0.02)
    raise AssertionError(f"session {pid} never waited for a lock")


def test_monitoring_shows_a_lock_wait_and_guards_pg_stat_statements(
    db: ConnInfo, tmp_path: Path
) -> None:
    scripts = export(db, tmp_path / "before")
    holder = psycopg.connect(db.conninfo(), application_name="holder")
    waiter = psycopg.connect(db.conninfo(), autocommit=True, application_name="waiter")
    holder_pid, waiter_pid = holder.info.backend_pid, waiter.info.backend_pid
    waiting: Waiter | None = None
    try:
        holder.execute('LOCK TABLE "Wallet" IN ACCESS EXCLUSIVE MODE')
        waiting = Waiter(waiter, 'SELECT count(*) FROM "Wallet"')
        _wait_for_lock(db, waiter_pid)

        output = psql(db, scripts["09_monitoring_queries.sql"])
    finally:
        holder.rollback()
        if waiting is not None:
            waiting.thread.join(timeout=30)
        holder.close()
        waiter.close()
    assert waiting is not None and waiting.error is None

    found = results(output)
    locks = {int(r["pid"]): r for r in result(found, "6.")}
    assert set(locks) == {holder_pid, waiter_pid}
    assert locks[holder_pid]["blocked_by"] == "{}"
    assert locks[waiter_pid]["blocked_by"] == f"{{{holder_pid}}}"
    assert locks[waiter_pid]["lock_mode"] == "AccessShareLock"
    assert locks[waiter_pid]["lock_relation"] == "public.Wallet"
    idle = [r for r in result(found, "5.") if r["application_name"] == "holder"]
    assert [r["state"] for r in idle] == ["idle in transaction"]
    assert [r["scope"] for r in result(found, "7.")] == ["database", "tables", "indexes"]
    assert not [t for t in found if t.startswith("Top ")]  # not installed: the \else branch
    assert "pg_stat_statements cannot be read here: pg_stat_statements is not installed" in output

    execute(db, "CREATE EXTENSION pg_stat_statements")
    execute(db, 'SELECT count(*) FROM "Wallet"')
    scripts = export(db, tmp_path / "after")
    output = psql(db, scripts["09_monitoring_queries.sql"])
    assert "cannot be read here" not in output
    by_total = result(results(output), "Top 10 statements by total time (at least 1 calls)")
    assert by_total and {r["database"] for r in by_total} == {db.dbname}
    assert "Top 10 statements by mean time (at least 5 calls)" in output


# -- 10 EXPLAIN ANALYZE ---------------------------------------------------------------------


def test_explain_templates_run_and_room_history_uses_its_index(
    seeded_db: SeededDb, tmp_path: Path
) -> None:
    info, naming, _ = seeded_db
    table, col = naming.table, naming.column
    profile = load_profile()
    # the hot room: the one with the most messages (ties: the smallest id)
    hot_room, messages = rows(
        info,
        sql.SQL("SELECT {r}::text, count(*) FROM {m} GROUP BY {r} ORDER BY 2 DESC, {r} LIMIT 1")
        .format(r=sql.Identifier(col("roomId")), m=sql.Identifier(table("Message")))
        .as_string(),
    )[0]
    scripts = export(info, tmp_path / "before")
    text = scripts["10_explain_analyze_templates.sql"].read_text()
    # the catalog pgrunbook explain runs, each sampled query twice (hot, typical)
    titles = re.findall(r"^-- (\d+\. .*)$", text, re.MULTILINE)
    expected = [
        (q.name, variant, q.index)
        for q in profile.queries
        for variant in (("hot", "typical") if q.params else ("fixed",))
    ]
    pattern = r"^-- \d+\. (\w+) \((\w+)\): .* \(should use (\w+)\)$"
    assert re.findall(pattern, text, re.MULTILINE) == expected
    assert len(titles) == 27
    assert titles[0] == (
        "1. room_history (hot): a room's message history: the latest 50 messages "
        "(should use idx_message_room_created_desc)"
    )
    room_history = (
        f'EXPLAIN (ANALYZE, BUFFERS) SELECT * FROM "public"."{table("Message")}" '
        f"WHERE \"{col('roomId')}\" = '{hot_room}' "
        f'ORDER BY "{col("createdAt")}" DESC LIMIT 50;'
    )
    assert room_history in text
    assert (
        f"-- :room_id = '{hot_room}' (hot: the {table('Message')}.{col('roomId')} with the "
        f"most rows ({messages:,}))" in text
    )

    before = psql(info, scripts["10_explain_analyze_templates.sql"])
    assert before.count("Execution Time:") == len(titles) == 27
    assert before.count("ROLLBACK") == 27

    # the index script 02 builds for it (as the runbook's verification expects)
    execute(
        info,
        sql.SQL("CREATE INDEX idx_message_room_created_desc ON {} ({}, {} DESC); ANALYZE {};")
        .format(
            sql.Identifier(table("Message")),
            sql.Identifier(col("roomId")),
            sql.Identifier(col("createdAt")),
            sql.Identifier(table("Message")),
        )
        .as_string(),
    )
    after = psql(info, scripts["10_explain_analyze_templates.sql"])
    plan = "\n".join(r["QUERY PLAN"] for r in result(results(after), "1. "))
    assert "Index Scan using idx_message_room_created_desc" in plan
