"""Step 03 (triggers) on a real server, both namings: plan, apply, verify, roll back, export.

The app-facing promise: after apply, an UPDATE from a session whose TimeZone is not UTC
stores the UTC wall clock in a ``timestamp`` column (Prisma's DateTime) and ``now()`` in a
``timestamptz`` one, whatever the statement wrote there.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from pgrunbook.change import ApplyPolicy, Journal, Operation, apply_operations
from pgrunbook.change.engine import open_context
from pgrunbook.change.lockmodes import LockMode
from pgrunbook.change.refs import ObjectRef, RefKind
from pgrunbook.change.step import StepContext, StepPlan
from pgrunbook.change.steps import triggers
from pgrunbook.change.steps.triggers.definitions import trigger_name
from pgrunbook.dsn import ConnInfo
from pgrunbook.profile import load_profile
from pgrunbook.reference import Naming
from tests.support import PgServer, SeededDb, execute, rows, run_psql, scalar, schema_dump

PROFILE = load_profile()
FAST = ApplyPolicy(lock_timeout_ms=100, budget_seconds=5, poll_seconds=0.05)
TS3 = "timestamp(3) without time zone"

# the triggers and the two functions of schema public, as the server renders them
STATE_SQL = """
SELECT 'trigger ' || c.relname || '.' || t.tgname || ': ' || pg_get_triggerdef(t.oid)
       || ' ' || t.tgenabled::text
  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
 WHERE c.relnamespace = 'public'::regnamespace AND NOT t.tgisinternal
UNION ALL
SELECT 'function ' || pg_get_functiondef(p.oid)
  FROM pg_proc p
 WHERE p.pronamespace = 'public'::regnamespace
   AND p.proname IN ('update_updated_at_camel', 'update_updated_at_snake')
ORDER BY 1
"""

UPDATED_AT_TABLES_SQL = """
SELECT c.relname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
 WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
   AND NOT c.relispartition AND a.attname IN ('updatedAt', 'updated_at')
   AND NOT a.attisdropped
"""


@contextmanager
def context(info: ConnInfo) -> Iterator[StepContext]:
    with open_context(info, PROFILE) as ctx:
        yield ctx


def apply(ctx: StepContext, ops: list[Operation]) -> None:
    journal = Journal(ctx.conn)
    journal.ensure()
    apply_operations(ctx.conn, ops, journal, policy=FAST)
    ctx.refresh()


def rollback(ctx: StepContext, ops: list[Operation]) -> None:
    journal = Journal(ctx.conn)
    apply_operations(ctx.conn, list(reversed(ops)), journal, action="rollback", policy=FAST)
    ctx.refresh()


def state(info: ConnInfo) -> list[str]:
    return [str(r[0]) for r in rows(info, STATE_SQL)]


def psql(pg_server: PgServer, info: ConnInfo, path: Path) -> None:
    run_psql(info, path, quiet=True)


def trigger_ops(plan: StepPlan) -> dict[str, Operation]:
    return {op.table[1]: op for op in plan.operations if op.table is not None}


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


# --- names (no server) ---------------------------------------------------------------------


def test_trigger_names() -> None:
    assert trigger_name("WalletTransaction") == "trg_wallet_transaction_updated_at"
    assert trigger_name("wallets") == "trg_wallets_updated_at"
    assert trigger_name("RoomMember") == "trg_room_member_updated_at"
    long = trigger_name("Very" + "LongTableName" * 4)
    assert long == "trg_very_long_table_name_long_table_name_long_table_updated_at"
    assert len(long.encode()) == 62
    # a two-byte character across the cut is dropped whole, never split
    wide = trigger_name("a" * 47 + "é" + "b")
    assert wide == "trg_" + "a" * 47 + "_updated_at" and len(wide.encode()) == 62


# --- plan ----------------------------------------------------------------------------------


def test_plan_covers_every_updated_at_table(seeded_db: SeededDb) -> None:
    info, naming, manifest = seeded_db
    before = state(info)
    with context(info) as ctx:
        plan = triggers.plan(ctx)
    assert state(info) == before == []  # plan changed nothing (and there was nothing)

    expected = {str(r[0]) for r in rows(info, UPDATED_AT_TABLES_SQL)}
    assert expected == set(manifest["updated_at_without_trigger"])
    assert len(expected) == 7
    assert (plan.present, plan.skipped, plan.refused, plan.warnings) == ([], [], [], [])

    camel, snake_fn, *rest = plan.operations
    for op, name in ((camel, "update_updated_at_camel"), (snake_fn, "update_updated_at_snake")):
        assert op.object == f"function public.{name}()"
        assert op.sql.startswith(f'CREATE FUNCTION "public"."{name}"()\n RETURNS trigger')
        assert op.reverse_sql == f'DROP FUNCTION IF EXISTS "public"."{name}"()'
        assert op.transactional and op.lock_mode is None and op.creates
        assert op.ref == ObjectRef(RefKind.FUNCTION, name, "public")
    column = naming.column("updatedAt")
    assert (
        f"NEW.\"{column}\" := pg_catalog.now() AT TIME ZONE 'UTC';"
        in (camel if column == "updatedAt" else snake_fn).sql
    )

    by_table = trigger_ops(plan)
    assert set(by_table) == expected and len(rest) == 7
    function = "update_updated_at_camel" if naming is Naming.PRISMA else "update_updated_at_snake"
    for table, op in by_table.items():
        name = trigger_name(table)
        assert op.object == f"trigger public.{table}.{name}"
        assert op.sql == (
            f'CREATE TRIGGER "{name}" BEFORE UPDATE ON "public"."{table}"\n'
            f'    FOR EACH ROW EXECUTE FUNCTION "public"."{function}"(\'utc\')'
        )
        assert op.reverse_sql == f'DROP TRIGGER IF EXISTS "{name}" ON "public"."{table}"'
        assert op.transactional and op.creates
        assert op.lock_mode is LockMode.SHARE_ROW_EXCLUSIVE
        assert op.reverse().lock_mode is LockMode.ACCESS_EXCLUSIVE
        assert op.table == ("public", table)
        assert op.ref == ObjectRef(RefKind.TRIGGER, name, "public", table)
    wallet = naming.table("Wallet")
    assert by_table[wallet].object.endswith(
        "trg_wallet_updated_at" if naming is Naming.PRISMA else "trg_wallets_updated_at"
    )


def strongest_lock(conn: psycopg.Connection[tuple[object, ...]], table: str) -> LockMode:
    """The strongest lock this session holds on ``table``."""
    found = conn.execute(
        "SELECT array_agg(mode) FROM pg_locks WHERE pid = pg_backend_pid()"
        " AND locktype = 'relation' AND relation = %s::regclass",
        (table,),
    ).fetchone()
    assert found is not None and found[0]
    held = [LockMode(mode) for mode in found[0]]  # type: ignore[attr-defined]
    return max(held, key=list(LockMode).index)


def test_locks_are_the_ones_postgres_takes(db: ConnInfo) -> None:
    """Each operation's lock_mode (and its inverse's) is the strongest lock the statement
    takes on the table, read from pg_locks inside the transaction; the function takes none."""
    with context(db) as ctx:
        plan = triggers.plan(ctx)
    fn_op = plan.operations[0]
    op = trigger_ops(plan)["Wallet"]
    undo = op.reverse()
    public_locks = (
        "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
        " WHERE l.pid = pg_backend_pid() AND c.relnamespace = 'public'::regnamespace"
    )
    with psycopg.connect(db.conninfo(), autocommit=True) as conn:
        with conn.transaction():
            conn.execute(fn_op.sql.encode())
            assert conn.execute(public_locks).fetchone() == (0,)
            conn.execute(op.sql.encode())
            assert (
                strongest_lock(conn, '"Wallet"') is op.lock_mode is (LockMode.SHARE_ROW_EXCLUSIVE)
            )
        with conn.transaction(force_rollback=True):
            conn.execute(undo.sql.encode())
            assert strongest_lock(conn, '"Wallet"') is undo.lock_mode is (LockMode.ACCESS_EXCLUSIVE)


# --- apply, verify, roll back --------------------------------------------------------------


def test_round_trip(seeded_db: SeededDb, pg_server: PgServer) -> None:
    info, naming, _ = seeded_db
    dump = schema_dump(pg_server, info)
    with context(info) as ctx:
        plan = triggers.plan(ctx)
        apply(ctx, plan.operations)
        again = triggers.plan(ctx)
        assert again.operations == [] and again.warnings == []
        assert sorted(again.present) == sorted(op.object for op in plan.operations)

        checks = triggers.verify(ctx)
        tables = {
            naming.table(t)
            for t in ("User", "Room", "RoomMember", "Message", "Gift", "Wallet", "Report")
        }
        assert {c.details["table"] for c in checks} == {f"public.{t}" for t in tables}
        for check in checks:
            table = check.details["table"].removeprefix("public.")
            assert check.passed, check.details
            assert check.step == "triggers" and check.name == f"updated_at trigger public.{table}"
            assert check.details["fired"] is True
            assert check.details["trigger"] == trigger_name(table)
            assert check.details["column"] == naming.column("updatedAt")
            assert check.details["column_type"] == TS3
            assert abs(check.details["offset_seconds"]) < 0.01
            assert check.details["value"] == check.details["expected"]
            assert "note" not in check.details
        assert state(info) != []
        rollback(ctx, plan.operations)
    assert state(info) == []
    assert schema_dump(pg_server, info) == dump
    # verify's test updates were all rolled back: no row was left with a new timestamp
    column = naming.column("updatedAt")
    table = naming.table("User")
    newest = scalar(info, f'SELECT max("{column}") FROM "{table}"')
    assert isinstance(newest, datetime) and newest < utc_now() - timedelta(seconds=1)


def test_app_session_in_another_time_zone_stores_utc(seeded_db: SeededDb) -> None:
    """A session with TimeZone = 'Asia/Tokyo' (UTC+9) updates rows: a timestamp column gets
    the UTC wall clock, a timestamptz column now(); even a value the statement sets is
    overwritten (the runbook's trigger always sets it)."""
    info, naming, _ = seeded_db
    users, column = naming.table("User"), naming.column("updatedAt")
    # an ad hoc table of the app's, not in the profile, with a timestamptz column
    execute(
        info,
        'CREATE TABLE "DeviceToken" (id int PRIMARY KEY, token text NOT NULL,'
        " updated_at timestamptz NOT NULL DEFAULT now());"
        """INSERT INTO "DeviceToken" VALUES (1, 'a', '2001-01-01 00:00:00+00');""",
    )
    with context(info) as ctx:
        plan = triggers.plan(ctx)
        token_op = trigger_ops(plan)["DeviceToken"]
        assert token_op.sql.endswith("""."update_updated_at_snake"('tz')""")
        assert token_op.object == "trigger public.DeviceToken.trg_device_token_updated_at"
        apply(ctx, plan.operations)

    with psycopg.connect(info.conninfo(), autocommit=True) as app:
        app.execute("SET TimeZone = 'Asia/Tokyo'")
        user_id = app.execute(f'SELECT id FROM "{users}" ORDER BY id LIMIT 1').fetchone()
        assert user_id is not None
        before = utc_now()
        app.execute(f'UPDATE "{users}" SET username = username WHERE id = %s', user_id)
        stored = app.execute(f'SELECT "{column}" FROM "{users}" WHERE id = %s', user_id).fetchone()
        assert stored is not None and abs(stored[0] - before) < timedelta(seconds=2)
        # the app writing its own (stale) value: overwritten all the same
        app.execute(f"""UPDATE "{users}" SET "{column}" = '1999-01-01' WHERE id = %s""", user_id)
        stored = app.execute(f'SELECT "{column}" FROM "{users}" WHERE id = %s', user_id).fetchone()
        assert stored is not None and abs(stored[0] - utc_now()) < timedelta(seconds=2)

        with app.transaction():
            row = app.execute(
                "UPDATE \"DeviceToken\" SET token = 'b' WHERE id = 1"
                " RETURNING updated_at = now(), updated_at"
            ).fetchone()
        assert row is not None and row[0] is True
        assert abs(row[1] - datetime.now(UTC)) < timedelta(seconds=2)
        assert str(row[1].tzinfo) == "Asia/Tokyo"  # psycopg reads it in the session's zone


def test_tables_left_alone_and_names_that_need_care(db: ConnInfo) -> None:
    execute(
        db,
        # not a timestamp: skipped
        'CREATE TABLE "LegacyDoc" (id int PRIMARY KEY, "updatedAt" date);'
        "CREATE TABLE note (id int PRIMARY KEY, updated_at text);"
        # partitioned: the parent gets the trigger, its partition is covered by it
        'CREATE TABLE "EventLog" (id int NOT NULL, "updatedAt" timestamp(3) NOT NULL)'
        " PARTITION BY RANGE (id);"
        'CREATE TABLE "EventLog_1" PARTITION OF "EventLog" FOR VALUES FROM (0) TO (100);'
        """INSERT INTO "EventLog" VALUES (1, '2001-01-01');"""
        # maintained by the app's own trigger: left alone
        "CREATE FUNCTION set_stamp() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN NEW.\"updatedAt\" := now() AT TIME ZONE 'UTC'; RETURN NEW; END $$;"
        'CREATE TABLE "Invoice" (id int PRIMARY KEY, "updatedAt" timestamp(3) NOT NULL);'
        """INSERT INTO "Invoice" VALUES (1, '2001-01-01');"""
        'CREATE TRIGGER set_stamp BEFORE UPDATE ON "Invoice" FOR EACH ROW'
        " EXECUTE FUNCTION set_stamp();"
        # the same, disabled: does not count, ours is added
        'CREATE TABLE "Coupon" (id int PRIMARY KEY, "updatedAt" timestamp(3));'
        'CREATE TRIGGER old_stamp BEFORE UPDATE ON "Coupon" FOR EACH ROW'
        " EXECUTE FUNCTION set_stamp();"
        'ALTER TABLE "Coupon" DISABLE TRIGGER old_stamp;'
        # both columns: camelCase wins
        'CREATE TABLE "BothStamps" (id int PRIMARY KEY, "updatedAt" timestamp(3),'
        " updated_at timestamptz);"
        # a name longer than a trigger name may be, with a multibyte character at the cut
        'CREATE TABLE "Überweisungsprotokoll_Zwischenablage_Ergebnisse_ß" (id int,'
        ' "updatedAt" timestamp(3));'
        # empty: the trigger is there but cannot be seen firing
        'CREATE TABLE "Draft" (id int PRIMARY KEY, "updatedAt" timestamp(3) NOT NULL);',
    )
    long_table = "Überweisungsprotokoll_Zwischenablage_Ergebnisse_ß"
    long_name = trigger_name(long_table)
    assert len(long_name.encode()) <= 63 and long_name.endswith("_updated_at")
    long_name.encode().decode()  # whole characters only

    with context(db) as ctx:
        plan = triggers.plan(ctx)
    skipped = {s.object: s.reason for s in plan.skipped}
    assert skipped == {
        "column public.LegacyDoc.updatedAt": "updatedAt is date; the trigger maintains only "
        "timestamp and timestamptz columns",
        "column public.note.updated_at": "updated_at is text; the trigger maintains only "
        "timestamp and timestamptz columns",
        "trigger public.EventLog_1.trg_event_log_1_updated_at": "a partition of "
        "public.EventLog: the trigger on public.EventLog is cloned onto it",
        "column public.Invoice.updatedAt": "already maintained by trigger set_stamp",
        "column public.BothStamps.updated_at": "the table also has updatedAt, which its one "
        "trigger trg_both_stamps_updated_at maintains",
    }
    ops = trigger_ops(plan)
    assert set(ops) == {
        "User",
        "Room",
        "RoomMember",
        "Message",
        "Gift",
        "Wallet",
        "Report",
        "EventLog",
        "BothStamps",
        long_table,
        "Draft",
        "Coupon",
    }
    assert plan.warnings == [
        "public.Coupon.updatedAt: trigger old_stamp would maintain it but is disabled; "
        "pgrunbook adds trg_coupon_updated_at"
    ]
    assert ops["BothStamps"].sql.endswith("""."update_updated_at_camel"('utc')""")
    long_ref = ops[long_table].ref
    assert long_ref is not None and long_ref.name == long_name

    with context(db) as ctx:
        apply(ctx, plan.operations)
        again = triggers.plan(ctx)
        assert again.operations == [] and again.warnings == []
        assert again.skipped == plan.skipped, (again.skipped, plan.skipped)
        found = {
            (str(r[0]), str(r[1]))
            for r in rows(
                db,
                "SELECT tgrelid::regclass::text, tgname FROM pg_trigger"
                " WHERE tgname ~ '^trg_' AND tgrelid::regclass::text NOT IN"
                " ('\"User\"', '\"Room\"', '\"RoomMember\"', '\"Message\"', '\"Gift\"',"
                " '\"Wallet\"', '\"Report\"')",
            )
        }
        assert (f'"{long_table}"', long_name) in found  # the server kept our name as it is
        assert ('"EventLog_1"', "trg_event_log_updated_at") in found  # the clone

        checks = {c.details["table"]: c for c in triggers.verify(ctx)}
        assert set(checks) == {f"public.{t}" for t in ops} | {"public.Invoice"}
        assert all(c.passed for c in checks.values()), [c.details for c in checks.values()]
        assert checks["public.EventLog"].details["fired"] is True  # through the partition
        draft = checks["public.Draft"].details
        assert draft["fired"] is False and draft["value"] is None
        assert draft["note"] == (
            "not fired: the table has no row free to update; passed on the trigger's presence only"
        )
        invoice = checks["public.Invoice"].details
        assert invoice["trigger"] == "set_stamp" and invoice["fired"] is True
        assert invoice["note"] == "maintained by set_stamp, a trigger pgrunbook did not make"

        rollback(ctx, plan.operations)
    # what was there before is still there; ours are gone
    left = rows(db, "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1")
    assert left == [("old_stamp",), ("set_stamp",)]
    assert scalar(db, "SELECT count(*) FROM pg_proc WHERE proname = 'set_stamp'") == 1


def test_existing_function_is_replaced_and_restored(db: ConnInfo) -> None:
    old_body = (
        "CREATE FUNCTION update_updated_at_camel() RETURNS trigger LANGUAGE plpgsql AS"
        ' $$ BEGIN NEW."updatedAt" := now(); RETURN NEW; END $$;'
        "COMMENT ON FUNCTION update_updated_at_camel() IS 'the old one';"
    )
    execute(db, old_body)
    old = scalar(db, "SELECT pg_get_functiondef('update_updated_at_camel()'::regprocedure)")
    with context(db) as ctx:
        plan = triggers.plan(ctx)
        camel = plan.operations[0]
        assert camel.object == "function public.update_updated_at_camel()"
        assert camel.sql.startswith('CREATE OR REPLACE FUNCTION "public"."update_updated_at_camel"')
        assert camel.reverse_sql == old and not camel.creates
        assert plan.warnings == [
            "public.update_updated_at_camel() exists with another definition: apply replaces "
            "it, rollback restores the recorded old definition"
        ]
        apply(ctx, plan.operations)
        assert triggers.plan(ctx).operations == []
        assert all(c.passed and c.details["fired"] for c in triggers.verify(ctx))
        rollback(ctx, plan.operations)
    assert scalar(db, "SELECT pg_get_functiondef('update_updated_at_camel()'::regprocedure)") == old
    assert scalar(db, "SELECT obj_description('update_updated_at_camel()'::regprocedure)") == (
        "the old one"
    )
    assert scalar(db, "SELECT to_regprocedure('update_updated_at_snake()') IS NULL") is True
    assert rows(db, "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal") == []


def test_function_that_cannot_be_replaced_is_refused(
    snake_db: ConnInfo, pg_server: PgServer, tmp_path: Path
) -> None:
    execute(
        snake_db,
        "CREATE FUNCTION update_updated_at_snake() RETURNS void LANGUAGE sql AS 'SELECT';",
    )
    with context(snake_db) as ctx:
        plan = triggers.plan(ctx)
        script = triggers.export(ctx)
    [refusal] = plan.refused
    assert refusal.object == "function public.update_updated_at_snake()"
    assert refusal.reason == (
        "a function public.update_updated_at_snake() already exists with another definition "
        "and it returns void, and CREATE OR REPLACE cannot change a return type; no table "
        "gets a trigger for its updated_at column"
    )
    rename = (
        'ALTER ROUTINE "public"."update_updated_at_snake"() RENAME TO "update_updated_at_snake_old"'
    )
    assert refusal.fix == f"{rename}; then run: pgrunbook apply triggers"
    assert [op.object for op in plan.operations] == ["function public.update_updated_at_camel()"]
    assert {s.object for s in plan.skipped} == {
        f"trigger public.{t}.{trigger_name(t)}"
        for t in ("users", "rooms", "room_members", "messages", "gifts", "wallets", "reports")
    }
    # the script leaves it too (it would fail on it), and says why
    assert '"update_updated_at_snake"()\n RETURNS' not in script.forward
    assert "--   function public.update_updated_at_snake(): a function public." in script.forward
    path = tmp_path / "03.sql"
    path.write_text(script.forward)
    psql(pg_server, snake_db, path)
    assert rows(
        snake_db,
        "SELECT proname, prorettype::regtype::text FROM pg_proc"
        " WHERE proname LIKE 'update_updated_at_%%' ORDER BY 1",
    ) == [
        ("update_updated_at_camel", "trigger"),
        ("update_updated_at_snake", "void"),
    ]
    assert rows(snake_db, "SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal") == [(0,)]


def test_verify_fails_when_the_trigger_is_wrong_or_missing(db: ConnInfo) -> None:
    with context(db) as ctx:
        apply(ctx, triggers.plan(ctx).operations)
    execute(
        db,
        'ALTER TABLE "User" DISABLE TRIGGER trg_user_updated_at;'
        # writes the session's local time into a timestamp column: hours off in New York
        "CREATE FUNCTION local_stamp() RETURNS trigger LANGUAGE plpgsql AS"
        ' $$ BEGIN NEW."updatedAt" := now(); RETURN NEW; END $$;'
        'DROP TRIGGER trg_wallet_updated_at ON "Wallet";'
        'CREATE TRIGGER trg_wallet_updated_at BEFORE UPDATE ON "Wallet" FOR EACH ROW'
        " EXECUTE FUNCTION local_stamp();"
        # sets the column only when the statement did not: a stale value survives
        "CREATE FUNCTION lazy_stamp() RETURNS trigger LANGUAGE plpgsql AS"
        ' $$ BEGIN IF NEW."updatedAt" = OLD."updatedAt" THEN'
        " NEW.\"updatedAt\" := now() AT TIME ZONE 'UTC'; END IF; RETURN NEW; END $$;"
        'DROP TRIGGER trg_gift_updated_at ON "Gift";'
        'CREATE TRIGGER trg_gift_updated_at BEFORE UPDATE ON "Gift" FOR EACH ROW'
        " EXECUTE FUNCTION lazy_stamp();"
        # every row violates a NOT VALID check: no update can run, the trigger is not seen
        'ALTER TABLE "Room" ADD CONSTRAINT chk_never CHECK (false) NOT VALID;'
        # two triggers of the runbook's pattern on one table
        'CREATE TRIGGER "trg_Report_updated_at" BEFORE UPDATE ON "Report" FOR EACH ROW'
        " EXECUTE FUNCTION update_updated_at_camel('utc');",
    )
    with context(db) as ctx:
        checks = {c.details["table"]: c for c in triggers.verify(ctx)}
        plan = triggers.plan(ctx)
    user = checks["public.User"]
    assert not user.passed
    assert user.details == {
        "table": "public.User",
        "column": "updatedAt",
        "note": "no enabled trg_*_updated_at BEFORE UPDATE row trigger",
    }
    wallet = checks["public.Wallet"].details
    assert not checks["public.Wallet"].passed and wallet["fired"] is True
    # New York is 4 or 5 hours behind UTC
    assert round(wallet["offset_seconds"] / 3600) in (-4, -5)
    assert "not the current time" in wallet["note"]
    gift = checks["public.Gift"].details
    assert not checks["public.Gift"].passed and gift["value"].startswith("2000-01-01 00:00:00")
    room = checks["public.Room"]
    assert room.passed and room.details["fired"] is False
    assert room.details["note"].startswith("not fired: the test update failed: new row for ")
    assert room.details["note"].endswith("passed on the trigger's presence only")
    report = checks["public.Report"]
    assert not report.passed
    assert report.details["note"] == (
        "more than one enabled trg_*_updated_at trigger: trg_Report_updated_at, "
        "trg_report_updated_at"
    )
    for other in ("Room", "RoomMember", "Message"):
        assert checks[f"public.{other}"].passed
    # plan leaves triggers of our names alone, and says what is wrong with them
    assert plan.operations == []
    leaves = "pgrunbook leaves it as it is (verify tests whether it keeps the column current)"
    assert sorted(plan.warnings) == [
        "trigger trg_gift_updated_at on public.Gift calls public.lazy_stamp(), not "
        f"public.update_updated_at_camel(); {leaves}",
        "trigger trg_user_updated_at on public.User is disabled (ALTER TABLE ... ENABLE "
        f"TRIGGER trg_user_updated_at turns it on); {leaves}",
        "trigger trg_wallet_updated_at on public.Wallet calls public.local_stamp(), not "
        f"public.update_updated_at_camel(); {leaves}",
    ]


def test_a_trigger_without_argument_follows_the_column_type(db: ConnInfo) -> None:
    """A trigger an older script created without the 'utc'/'tz' argument still writes what
    the column's type needs."""
    with context(db) as ctx:
        apply(ctx, triggers.plan(ctx).operations)
    execute(
        db,
        "CREATE TABLE stamp_tz (id int PRIMARY KEY, updated_at timestamptz);"
        "CREATE TABLE stamp_utc (id int PRIMARY KEY, updated_at timestamp);"
        "INSERT INTO stamp_tz VALUES (1, NULL); INSERT INTO stamp_utc VALUES (1, NULL);"
        "CREATE TRIGGER trg_stamp_tz_updated_at BEFORE UPDATE ON stamp_tz FOR EACH ROW"
        " EXECUTE FUNCTION update_updated_at_snake();"
        "CREATE TRIGGER trg_stamp_utc_updated_at BEFORE UPDATE ON stamp_utc FOR EACH ROW"
        " EXECUTE FUNCTION update_updated_at_snake();",
    )
    with psycopg.connect(db.conninfo(), autocommit=True) as app, app.transaction():
        app.execute("SET LOCAL TimeZone = 'Asia/Tokyo'")
        tz = app.execute("UPDATE stamp_tz SET id = 1 RETURNING updated_at = now()").fetchone()
        utc = app.execute(
            "UPDATE stamp_utc SET id = 1 RETURNING updated_at = now() AT TIME ZONE 'UTC'"
        ).fetchone()
    assert tz == (True,) and utc == (True,)
    with context(db) as ctx:
        plan = triggers.plan(ctx)
        checks = {c.details["table"]: c for c in triggers.verify(ctx)}
    assert plan.operations == [] and plan.warnings == []
    assert {
        "trigger public.stamp_tz.trg_stamp_tz_updated_at",
        "trigger public.stamp_utc.trg_stamp_utc_updated_at",
    } <= set(plan.present)
    assert checks["public.stamp_tz"].passed and checks["public.stamp_tz"].details["fired"]
    assert checks["public.stamp_utc"].passed and checks["public.stamp_utc"].details["fired"]


# --- export --------------------------------------------------------------------------------


def test_export_runs_with_psql(seeded_db: SeededDb, pg_server: PgServer, tmp_path: Path) -> None:
    info = seeded_db.info
    dump = schema_dump(pg_server, info)
    with context(info) as ctx:
        plan = triggers.plan(ctx)
        script = triggers.export(ctx)
    assert script.forward.startswith("-- 03_updated_at_trigger.sql: ")
    assert "psql -X -v ON_ERROR_STOP=1 -f 03_updated_at_trigger.sql" in script.forward
    assert "BEGIN;\nSET LOCAL lock_timeout = '100ms';\n" in script.forward
    assert script.forward.rstrip().endswith("COMMIT;")
    forward, back = tmp_path / "03.sql", tmp_path / "rollback_03.sql"
    forward.write_text(script.forward)
    back.write_text(script.rollback)

    psql(pg_server, info, forward)
    once = state(info)
    psql(pg_server, info, forward)
    assert state(info) == once
    with context(info) as ctx:
        # the script made exactly what apply would have made
        again = triggers.plan(ctx)
        assert again.operations == []
        assert sorted(again.present) == sorted(op.object for op in plan.operations)
        assert all(c.passed and c.details["fired"] for c in triggers.verify(ctx))
    assert len([s for s in once if s.startswith("trigger ")]) == 7

    psql(pg_server, info, back)
    assert state(info) == []
    psql(pg_server, info, back)  # and again: nothing left to drop
    assert schema_dump(pg_server, info) == dump


def test_export_rollback_leaves_other_triggers(
    db: ConnInfo, pg_server: PgServer, tmp_path: Path
) -> None:
    """The rollback script drops only trg_*_updated_at triggers calling our functions."""
    execute(
        db,
        "CREATE FUNCTION set_stamp() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN NEW.\"updatedAt\" := now() AT TIME ZONE 'UTC'; RETURN NEW; END $$;"
        'CREATE TRIGGER "trg_Gift_updated_at" BEFORE UPDATE ON "Gift" FOR EACH ROW'
        " EXECUTE FUNCTION set_stamp();",
    )
    with context(db) as ctx:
        script = triggers.export(ctx)
    assert (
        "-- Left alone:\n--   column public.Gift.updatedAt: already maintained by trigger "
        "trg_Gift_updated_at\n" in script.forward
    )
    forward, back = tmp_path / "03.sql", tmp_path / "rollback_03.sql"
    forward.write_text(script.forward)
    back.write_text(script.rollback)
    psql(pg_server, db, forward)
    assert scalar(db, "SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal") == 7
    psql(pg_server, db, back)
    assert rows(db, "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal") == [
        ("trg_Gift_updated_at",)
    ]
