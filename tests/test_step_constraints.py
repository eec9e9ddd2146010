"""Step `constraints` (runbook script 06) and `pgrunbook fix constraints` on a real server.

The seeded databases hold injected violations (``Template.report.anomalies``): the plan must
refuse exactly those constraints with exactly those counts, add none of them, and add them
all once `fix_constraints` has repaired the rows (recording the old rows in the audit log).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import psycopg
import pytest
from psycopg import errors, sql

from pgrunbook.change import ApplyPolicy, Journal, Operation, apply_operations
from pgrunbook.change.engine import open_context
from pgrunbook.change.lockmodes import LockMode
from pgrunbook.change.refs import ObjectRef, RefKind
from pgrunbook.change.step import StepContext, StepOptions
from pgrunbook.change.steps.constraints import STEP, plan, verify
from pgrunbook.change.steps.constraints.fix import ACTION, fix_constraints
from pgrunbook.change.steps.constraints.statements import FIX_COMMAND
from pgrunbook.dsn import ConnInfo
from pgrunbook.errors import ConfigError
from pgrunbook.locking import LockBudgetExceeded
from pgrunbook.profile import load_profile
from pgrunbook.reference import Naming
from tests.support import SEEDED_VIOLATIONS, SeededDb, Template, execute, rows, run_psql, scalar

NAMINGS = [("db", Naming.PRISMA), ("snake_db", Naming.SNAKE)]
FAST = ApplyPolicy(lock_timeout_ms=100, budget_seconds=10, poll_seconds=0.05)

CLEAN = {
    "chk_gift_price_positive": "Gift",
    "chk_giftsend_quantity_positive": "GiftSend",
    "chk_giftsend_totalprice_positive": "GiftSend",
    "chk_room_maxmembers_positive": "Room",
}
DELETED = {"chk_wallet_tx_amount_nonzero", "chk_giftsend_not_self", "chk_follow_not_self"}
AUDIT_COLUMNS = ("id", "userId", "action", "entityType", "entityId", "oldValues", "newValues",
                 "metadata", "ipAddress", "userAgent", "createdAt")  # fmt: skip

CONSTRAINTS_SQL = """
SELECT c.relname, con.conname, con.convalidated
  FROM pg_constraint con
  JOIN pg_class c ON c.oid = con.conrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'public' AND con.contype = 'c' AND left(con.conname, 4) = 'chk_'
 ORDER BY 2
"""
ALL_CONSTRAINTS_SQL = """
SELECT c.relname, con.conname, pg_get_constraintdef(con.oid), con.convalidated
  FROM pg_constraint con
  JOIN pg_class c ON c.oid = con.conrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'public'
 ORDER BY 1, 2
"""


def checks(info: ConnInfo) -> dict[str, tuple[str, bool]]:
    """The chk_* CHECK constraints of schema public: name -> (table, validated)."""
    return {str(r[1]): (str(r[0]), bool(r[2])) for r in rows(info, CONSTRAINTS_SQL)}


@contextmanager
def context(info: ConnInfo, **options: Any) -> Iterator[StepContext]:
    with open_context(info, load_profile(), options=StepOptions(**options)) as ctx:
        yield ctx


def apply(ctx: StepContext, ops: list[Operation], policy: ApplyPolicy = FAST) -> Journal:
    journal = Journal(ctx.conn)
    journal.ensure()
    apply_operations(ctx.conn, ops, journal, policy=policy)
    ctx.refresh()
    return journal


def ident(*names: str) -> str:
    return sql.Identifier(*names).as_string()


def create_audit_table(info: ConnInfo, naming: Naming) -> str:
    """A minimal audit table in the database's naming (the audit step's columns)."""
    name = "AuditLog" if naming is Naming.PRISMA else "audit_logs"
    c = {logical: ident(naming.column(logical)) for logical in AUDIT_COLUMNS}
    execute(
        info,
        f"CREATE TABLE {ident(name)} ({c['id']} uuid PRIMARY KEY DEFAULT gen_random_uuid(),"
        f" {c['userId']} uuid, {c['action']} varchar(100) NOT NULL,"
        f" {c['entityType']} varchar(100) NOT NULL, {c['entityId']} varchar(255),"
        f" {c['oldValues']} jsonb, {c['newValues']} jsonb, {c['metadata']} jsonb,"
        f" {c['ipAddress']} varchar(45), {c['userAgent']} text,"
        f" {c['createdAt']} timestamp(3) NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'))",
    )
    return name


def listed(info: ConnInfo, query: str) -> set[str]:
    with psycopg.connect(info.conninfo(), autocommit=True) as conn:
        return {str(r[0]) for r in conn.execute(query.encode()).fetchall()}


def table_digest(info: ConnInfo, naming: Naming) -> dict[str, str]:
    """An md5 of every profile table's rows: proves a dry run or a refusal changed nothing."""
    out = {}
    for logical in ("User", "Room", "Gift", "GiftSend", "Wallet", "WalletTransaction", "Follow"):
        table = ident(naming.table(logical))
        out[logical] = str(
            scalar(info, f"SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM {table} t")
        )
    return out


# -- plan ------------------------------------------------------------------------------


def test_plan_refuses_exactly_the_injected_violations(seeded_db: SeededDb) -> None:
    info, naming, manifest = seeded_db
    before = table_digest(info, naming)
    with context(info) as ctx:
        result = plan(ctx)

    refused = {r.details["constraint"]: r for r in result.refused}
    assert set(refused) == set(SEEDED_VIOLATIONS)
    for name, (logical, anomaly) in SEEDED_VIOLATIONS.items():
        refusal = refused[name]
        count = manifest[anomaly]
        assert count > 0
        table = f"public.{naming.table(logical)}"
        assert refusal.object == f"constraint {table}.{name}"
        assert refusal.details["count"] == count, name
        assert refusal.details["sampled"] is False and refusal.details["timed_out"] is False
        assert refusal.reason.startswith(f"{count} rows violate {name} (e.g. ")
        assert "a NOT VALID constraint is still checked on every new row version" in refusal.reason
        assert "any app UPDATE of a violating row fails" in refusal.reason
        assert refusal.fix == FIX_COMMAND  # every seeded violation has an automatic fix
        rows_listed = listed(info, refusal.details["query"])
        assert len(rows_listed) == count
        assert len(refusal.details["samples"]) == min(count, 5)
        assert set(refusal.details["samples"]) <= rows_listed
    wallet = refused["chk_wallet_balance_non_negative"]
    updated = naming.column("updatedAt")
    assert f"even one that only touches {updated}; list them with: " in wallet.reason

    assert [op.object for op in result.operations] == [
        f"{kind} public.{naming.table(logical)}.{name}"
        for name, logical in CLEAN.items()
        for kind in ("constraint", "validate")
    ]
    assert result.present == [] and result.skipped == [] and result.warnings == []
    assert checks(info) == {}  # planning changed nothing
    assert table_digest(info, naming) == before


def test_operations_are_exact(db: ConnInfo) -> None:
    with context(db) as ctx:
        ops = {op.object: op for op in plan(ctx).operations}
    add = ops["constraint public.Gift.chk_gift_price_positive"]
    assert add.sql == (
        'ALTER TABLE "public"."Gift" ADD CONSTRAINT "chk_gift_price_positive" '
        'CHECK ("price" > 0) NOT VALID'
    )
    assert add.reverse_sql == (
        'ALTER TABLE "public"."Gift" DROP CONSTRAINT IF EXISTS "chk_gift_price_positive"'
    )
    assert (add.transactional, add.lock_mode, add.table, add.creates) == (
        True, LockMode.ACCESS_EXCLUSIVE, ("public", "Gift"), True)  # fmt: skip
    ref = ObjectRef(RefKind.CONSTRAINT, "chk_gift_price_positive", "public", "Gift")
    assert add.ref == ref
    assert add.reverse().lock_mode is LockMode.ACCESS_EXCLUSIVE
    validate = ops["validate public.Gift.chk_gift_price_positive"]
    assert validate.sql == (
        'ALTER TABLE "public"."Gift" VALIDATE CONSTRAINT "chk_gift_price_positive"'
    )
    assert (validate.transactional, validate.lock_mode, validate.reverse_sql) == (
        True, LockMode.SHARE_UPDATE_EXCLUSIVE, None)  # fmt: skip
    assert validate.ref == ref and not validate.creates
    assert not validate.blocks_app and add.blocks_app


def test_declared_locks_are_the_locks_the_server_takes(db: ConnInfo) -> None:
    """Each statement's strongest lock on the table, read from pg_locks inside its
    transaction, is the lock the operation declares (the runner waits on that one)."""
    with context(db) as ctx:
        add, validate = [op for op in plan(ctx).operations if op.table == ("public", "Gift")]
    order = list(LockMode)
    held = (
        "SELECT mode FROM pg_locks WHERE locktype = 'relation' AND pid = pg_backend_pid() "
        "AND relation = '\"Gift\"'::regclass"
    )

    def strongest(conn: psycopg.Connection[Any], statement: str) -> LockMode:
        with conn.transaction(force_rollback=True):
            conn.execute(statement.encode())
            modes = [LockMode(str(r[0])) for r in conn.execute(held).fetchall()]
        return max(modes, key=order.index)

    with psycopg.connect(db.conninfo(), autocommit=True) as conn:
        assert strongest(conn, add.sql) is add.lock_mode is LockMode.ACCESS_EXCLUSIVE
        conn.execute(add.sql.encode())
        assert strongest(conn, validate.sql) is validate.lock_mode
        assert validate.lock_mode is LockMode.SHARE_UPDATE_EXCLUSIVE
        drop = add.reverse()
        assert strongest(conn, drop.sql) is drop.lock_mode is LockMode.ACCESS_EXCLUSIVE


# -- apply, verify, rollback -----------------------------------------------------------


def test_apply_adds_only_the_clean_constraints_and_rolls_back(seeded_db: SeededDb) -> None:
    info, naming, _ = seeded_db
    before = rows(info, ALL_CONSTRAINTS_SQL)
    digest = table_digest(info, naming)
    with context(info) as ctx:
        ops = plan(ctx).operations
        journal = apply(ctx, ops)
        assert checks(info) == {n: (naming.table(t), True) for n, t in CLEAN.items()}

        again = plan(ctx)
        assert again.operations == []
        assert again.present == [
            f"constraint public.{naming.table(t)}.{n}" for n, t in CLEAN.items()
        ]
        assert {r.details["constraint"] for r in again.refused} == set(SEEDED_VIOLATIONS)
        results = {v.name: v for v in verify(ctx)}
        assert len(results) == 12
        for name, logical in CLEAN.items():
            check = results[f"constraint {name}"]
            assert check.passed and check.details["validated"] is True
            assert check.details["table"] == f"public.{naming.table(logical)}"
            assert check.details["definition"].startswith("CHECK (")
        for name in SEEDED_VIOLATIONS:
            assert results[f"constraint {name}"].passed is False
            assert results[f"constraint {name}"].details["definition"] is None

        apply_operations(ctx.conn, list(reversed(ops)), journal, action="rollback", policy=FAST)
    assert checks(info) == {}
    assert rows(info, ALL_CONSTRAINTS_SQL) == before
    assert table_digest(info, naming) == digest


def test_add_not_valid_adds_them_anyway_and_an_app_update_then_fails(db: ConnInfo) -> None:
    with context(db, add_not_valid=True) as ctx:
        result = plan(ctx)
        adds = [op for op in result.operations if op.object.startswith("constraint ")]
        assert len(adds) == 12
        assert len(result.operations) == 12 + len(CLEAN)
        wallet = next(op for op in adds if op.object.endswith(".chk_wallet_balance_non_negative"))
        assert "--add-not-valid" in wallet.why and "4 rows violate it" in wallet.why
        assert {r.object for r in result.refused} == {
            f"validate public.{t}.{n}" for n, (t, _) in SEEDED_VIOLATIONS.items()
        }
        assert all(r.reason.startswith("not validated: ") for r in result.refused)
        apply(ctx, result.operations)

        state = checks(db)
        assert {n for n, (_, valid) in state.items() if valid} == set(CLEAN)
        assert {n for n, (_, valid) in state.items() if not valid} == set(SEEDED_VIOLATIONS)

        # the consequence: an app UPDATE of a violating row fails, even touching only updatedAt
        bad = str(scalar(db, 'SELECT id FROM "Wallet" WHERE balance < 0 ORDER BY id LIMIT 1'))
        good = str(scalar(db, 'SELECT id FROM "Wallet" WHERE balance > 0 ORDER BY id LIMIT 1'))
        touch = 'UPDATE "Wallet" SET "updatedAt" = now() WHERE id = %s'
        with psycopg.connect(db.conninfo(), autocommit=True) as app:
            with pytest.raises(errors.CheckViolation, match="chk_wallet_balance_non_negative"):
                app.execute(touch, (bad,))
            assert app.execute(touch, (good,)).rowcount == 1
            with pytest.raises(errors.CheckViolation):  # new bad rows are refused at once
                app.execute('UPDATE "Wallet" SET balance = -1 WHERE id = %s', (good,))

        # NOT VALID and still violated: refused; once the rows are fixed: validated
        again = plan(ctx)
        assert again.operations == [] and len(again.refused) == len(SEEDED_VIOLATIONS)
        execute(db, 'UPDATE "Wallet" SET balance = 0 WHERE balance < 0')
        ctx.refresh()
        fixed = plan(ctx)
        assert [op.object for op in fixed.operations] == [
            "validate public.Wallet.chk_wallet_balance_non_negative"
        ]
        apply(ctx, fixed.operations)
    assert checks(db)["chk_wallet_balance_non_negative"] == ("Wallet", True)


def test_fix_after_add_not_valid_then_the_rest_is_validation(db: ConnInfo) -> None:
    create_audit_table(db, Naming.PRISMA)
    with context(db, add_not_valid=True) as ctx:
        apply(ctx, plan(ctx).operations)
        results = fix_constraints(ctx, dry_run=False)
        assert sum(r.rows_changed for r in results) > 0
        assert all(r.skipped is None for r in results if r.constraint in SEEDED_VIOLATIONS)
        ctx.refresh()
        result = plan(ctx)
        assert result.refused == []
        assert {op.object for op in result.operations} == {
            f"validate public.{t}.{n}" for n, (t, _) in SEEDED_VIOLATIONS.items()
        }
        apply(ctx, result.operations)
        assert all(v.passed for v in verify(ctx))


# -- fix constraints -------------------------------------------------------------------


def test_fix_refuses_without_an_audit_table(db: ConnInfo) -> None:
    digest = table_digest(db, Naming.PRISMA)
    with context(db) as ctx, pytest.raises(ConfigError) as caught:
        fix_constraints(ctx, dry_run=False)
    assert caught.value.one_line() == (
        "the audit table does not exist: run `pgrunbook apply audit` first"
    )
    assert table_digest(db, Naming.PRISMA) == digest


def test_fix_dry_run_changes_nothing(db: ConnInfo, templates: dict[Naming, Template]) -> None:
    manifest = templates[Naming.PRISMA].report.anomalies
    audit = create_audit_table(db, Naming.PRISMA)
    digest = table_digest(db, Naming.PRISMA)
    with context(db) as ctx:
        results = {r.constraint: r for r in fix_constraints(ctx, dry_run=True)}
    assert len(results) == 12
    for name, (_, anomaly) in SEEDED_VIOLATIONS.items():
        result = results[name]
        assert (result.violations, result.rows_changed, result.audit_rows) == (
            manifest[anomaly], 0, 0)  # fmt: skip
        assert result.dry_run and result.skipped is None and len(result.sql) == 2
        assert "FOR UPDATE OF t" in result.sql[0] and '"public"."AuditLog"' in result.sql[0]
        verb = "DELETE FROM" if name in DELETED else "UPDATE"
        assert f'{verb} "public".' in result.sql[0]
    for name in CLEAN:
        assert results[name].skipped == "no row violates it" and results[name].sql == []
    assert table_digest(db, Naming.PRISMA) == digest
    assert scalar(db, f"SELECT count(*) FROM {ident(audit)}") == 0


def test_fix_repairs_every_violation_then_all_twelve_are_added(seeded_db: SeededDb) -> None:
    info, naming, manifest = seeded_db
    audit = ident(create_audit_table(info, naming))
    col = {logical: ident(naming.column(logical)) for logical in AUDIT_COLUMNS}
    wallets = ident(naming.table("Wallet"))
    follows = ident(naming.table("Follow"))
    negative = {
        str(r[0]): int(str(r[1]))
        for r in rows(info, f"SELECT id, balance FROM {wallets} WHERE balance < 0")
    }
    follows_before = scalar(info, f"SELECT count(*) FROM {follows}")
    with context(info) as ctx:
        results = {r.constraint: r for r in fix_constraints(ctx, dry_run=False)}
        for name, (_, anomaly) in SEEDED_VIOLATIONS.items():
            fixed = results[name]
            assert fixed.skipped is None, fixed.skipped
            assert fixed.rows_changed == manifest[anomaly], name
            assert fixed.audit_rows == manifest[anomaly], name
        for name in CLEAN:
            assert results[name].rows_changed == 0

        # one audit row per changed row, with the old row (and the new one for an update)
        audited = rows(
            info,
            f"SELECT {col['metadata']} ->> 'constraint', {col['entityType']}, {col['entityId']},"
            f" {col['oldValues']}, {col['newValues']}, {col['metadata']}"
            f" FROM {audit} WHERE {col['action']} = '{ACTION}'",
        )
        per_constraint: dict[str, int] = {}
        for constraint, *_ in audited:
            per_constraint[str(constraint)] = per_constraint.get(str(constraint), 0) + 1
        assert per_constraint == {n: manifest[a] for n, (_, a) in SEEDED_VIOLATIONS.items()}
        balances = {
            str(entity): (cast(dict[str, Any], old), cast(dict[str, Any], new))
            for constraint, _, entity, old, new, _ in audited
            if constraint == "chk_wallet_balance_non_negative"
        }
        assert {k: old["balance"] for k, (old, _) in balances.items()} == negative
        assert all(new["balance"] == 0 for _, new in balances.values())
        entity_types = {str(r[1]) for r in audited if r[0] == "chk_follow_not_self"}
        assert entity_types == {naming.table("Follow")}
        assert all(r[4] is None for r in audited if r[0] in DELETED)
        metadata = audited[0][5]
        assert isinstance(metadata, dict) and metadata["tool"] == "pgrunbook"
        assert scalar(info, f"SELECT count(*) FROM {follows}") == (
            int(str(follows_before)) - manifest["self_follows"]
        )

        # the rows are fixed: all twelve are planned, added, validated, verified
        ctx.refresh()
        result = plan(ctx)
        assert result.refused == []
        assert len(result.operations) == 24
        apply(ctx, result.operations)
        assert all(v.passed for v in verify(ctx)) and len(verify(ctx)) == 12
        assert plan(ctx).operations == []
        # and a second fix finds nothing to do
        again = fix_constraints(ctx, dry_run=False)
        assert all(r.rows_changed == 0 and r.skipped for r in again)
    assert len(checks(info)) == 12


def test_manual_strategy_leaves_the_rows_alone(db: ConnInfo) -> None:
    gift = str(scalar(db, 'SELECT id FROM "Gift" ORDER BY id LIMIT 1'))
    execute(db, f"UPDATE \"Gift\" SET price = 0 WHERE id = '{gift}'")
    with context(db) as ctx:
        refusal = next(
            r for r in plan(ctx).refused if r.details["constraint"] == "chk_gift_price_positive"
        )
        assert refusal.details["count"] == 1 and refusal.details["samples"] == [gift]
        assert refusal.fix.startswith("fix the rows by hand: a gift without a positive price")
        assert refusal.details["query"] in refusal.fix
        # no audit table needed: nothing automatic was asked for
        [result] = fix_constraints(ctx, ["chk_gift_price_positive"], dry_run=False)
    assert result.strategy == "manual" and result.violations == 1
    assert result.rows_changed == 0 and result.sql == []
    assert result.skipped is not None and result.skipped.startswith("no automatic fix: ")
    assert scalar(db, f"SELECT price FROM \"Gift\" WHERE id = '{gift}'") == 0


def test_a_fix_that_leaves_violations_is_rolled_back(db: ConnInfo) -> None:
    # a room whose capacity is negative: clamping currentMembers to it still violates
    room = str(scalar(db, 'SELECT id FROM "Room" WHERE "currentMembers" > 0 ORDER BY id LIMIT 1'))
    execute(db, f'UPDATE "Room" SET "maxMembers" = -1 WHERE id = \'{room}\'')
    create_audit_table(db, Naming.PRISMA)
    digest = table_digest(db, Naming.PRISMA)
    with context(db) as ctx:
        [result] = fix_constraints(ctx, ["chk_room_currentmembers_valid"], dry_run=False)
    assert result.skipped is not None
    assert result.skipped.startswith("rolled back, nothing changed: after the fix 1 row still")
    assert result.rows_changed == 0
    assert table_digest(db, Naming.PRISMA) == digest
    assert scalar(db, 'SELECT count(*) FROM "AuditLog"') == 0


def test_a_delete_that_would_cascade_is_refused(db: ConnInfo) -> None:
    create_audit_table(db, Naming.PRISMA)
    execute(
        db,
        'CREATE TABLE follow_note (id int PRIMARY KEY, "followId" uuid REFERENCES "Follow" (id)'
        " ON DELETE CASCADE);"
        'INSERT INTO follow_note SELECT 1, id FROM "Follow" WHERE "followerId" = "followingId"'
        " LIMIT 1;",
    )
    digest = table_digest(db, Naming.PRISMA)
    with context(db) as ctx:
        [result] = fix_constraints(ctx, ["chk_follow_not_self"], dry_run=False)
    assert result.skipped is not None and result.skipped.startswith(
        "deleting them would also change rows of other tables through "
        "follow_note.follow_note_followId_fkey ON DELETE CASCADE: fix them by hand"
    )
    assert result.rows_changed == 0
    assert table_digest(db, Naming.PRISMA) == digest
    assert scalar(db, "SELECT count(*) FROM follow_note") == 1


def test_fix_writes_to_the_table_the_audit_step_creates(db: ConnInfo) -> None:
    from pgrunbook.change.steps import audit

    with context(db) as ctx:
        apply(ctx, audit.STEP.plan(ctx).operations)
        [result] = fix_constraints(ctx, ["chk_wallet_diamonds_non_negative"], dry_run=False)
    assert (result.rows_changed, result.audit_rows, result.skipped) == (3, 3, None)
    audited = rows(
        db,
        'SELECT "entityType", "oldValues" -> \'diamonds\', "newValues" -> \'diamonds\','
        ' "entityId" = "oldValues" ->> \'id\' FROM "AuditLog" WHERE action = \'' + ACTION + "'",
    )
    assert len(audited) == 3
    assert all(r[0] == "Wallet" and int(str(r[1])) < 0 and r[2] == 0 and r[3] for r in audited)


def test_unknown_constraint_name(db: ConnInfo) -> None:
    with context(db) as ctx, pytest.raises(ConfigError, match="has no constraint 'chk_nope'"):
        fix_constraints(ctx, ["chk_nope"], dry_run=True)


# -- online safety -----------------------------------------------------------------------


def test_add_waits_for_a_holder_instead_of_queueing(db: ConnInfo) -> None:
    execute(db, 'UPDATE "Wallet" SET balance = 0 WHERE balance < 0;'
                'UPDATE "Wallet" SET diamonds = 0 WHERE diamonds < 0')  # fmt: skip
    holder = psycopg.connect(db.conninfo(), autocommit=True)
    holder.execute("BEGIN")
    holder.execute('SELECT * FROM "Wallet" LIMIT 1')  # ACCESS SHARE: conflicts with the ADD
    release = threading.Timer(0.5, lambda: holder.execute("COMMIT"))
    app_writes: list[int] = []
    queued: list[int] = []

    def watch(event: str, op: Operation, text: str) -> None:
        if event != "waiting" or app_writes:
            return
        queued.append(int(str(scalar(db, "SELECT count(*) FROM pg_locks WHERE NOT granted"))))
        with psycopg.connect(db.conninfo(), autocommit=True) as app:  # the app writes on
            app.execute("SET lock_timeout = '1s'")
            app_writes.append(app.execute('UPDATE "Wallet" SET "updatedAt" = now()').rowcount)
        release.start()

    try:
        with context(db) as ctx:
            ops = [op for op in plan(ctx).operations if op.table == ("public", "Wallet")]
            assert len(ops) == 4
            journal = Journal(ctx.conn)
            journal.ensure()
            results = apply_operations(ctx.conn, ops, journal, policy=FAST, report=watch)
    finally:
        if release.is_alive() or app_writes:
            release.join()
        holder.close()
    assert queued == [0] and app_writes and app_writes[0] > 0
    assert results[0].waited_seconds >= 0.4
    assert "AccessShareLock" in results[0].blockers[0]
    assert checks(db)["chk_wallet_balance_non_negative"] == ("Wallet", True)
    assert checks(db)["chk_wallet_diamonds_non_negative"] == ("Wallet", True)


def test_add_gives_up_cleanly_when_the_holder_stays(db: ConnInfo) -> None:
    with context(db) as ctx, psycopg.connect(db.conninfo(), autocommit=True) as holder:
        ops = [op for op in plan(ctx).operations if op.table == ("public", "Gift")]
        holder.execute("BEGIN")
        holder.execute('SELECT * FROM "Gift" LIMIT 1')
        journal = Journal(ctx.conn)
        journal.ensure()
        policy = ApplyPolicy(budget_seconds=0.5, poll_seconds=0.05)
        with pytest.raises(LockBudgetExceeded, match=r"gave up on constraint public\.Gift"):
            apply_operations(ctx.conn, ops, journal, policy=policy)
        holder.execute("ROLLBACK")
    assert checks(db) == {}


def test_a_count_that_cannot_finish_is_refused(db: ConnInfo) -> None:
    with context(db) as ctx, psycopg.connect(db.conninfo(), autocommit=True) as holder:
        holder.execute("BEGIN")
        holder.execute('LOCK TABLE "Gift" IN ACCESS EXCLUSIVE MODE')  # the count cannot read
        result = plan(ctx)
        holder.execute("ROLLBACK")
    gift = [r for r in result.refused if r.details["constraint"] == "chk_gift_price_positive"]
    assert len(gift) == 1
    assert gift[0].reason.startswith("could not count in time the rows that violate")
    assert gift[0].details["timed_out"] is True and gift[0].details["count"] is None
    assert not [op for op in result.operations if op.table == ("public", "Gift")]
    assert len(result.operations) == 6  # the other three clean ones


# -- other schemas -----------------------------------------------------------------------


def test_missing_tables_and_columns_are_skipped(empty_db: ConnInfo) -> None:
    execute(empty_db, "CREATE TABLE users (id int PRIMARY KEY, email text);"
                      "INSERT INTO users VALUES (1, 'a@example.com'), (2, NULL);")  # fmt: skip
    with context(empty_db) as ctx:
        result = plan(ctx)
        script = STEP.export(ctx)
        checks_run = verify(ctx)
    assert [op.object for op in result.operations] == [
        "constraint public.users.chk_user_email_format",
        "validate public.users.chk_user_email_format",
    ]
    skipped = {s.object: s.reason for s in result.skipped}
    assert skipped["constraint public.users.chk_user_username_format"] == (
        "column 'username' not found in public.users"
    )
    assert skipped["constraint public.Wallet.chk_wallet_balance_non_negative"] == (
        "table 'Wallet' not found in schema public"
    )
    assert len(skipped) == 11
    assert [v.name for v in checks_run] == ["constraint chk_user_email_format"]
    assert "-- skipped constraint public.Follow.chk_follow_not_self" in script.forward
    assert script.rollback.count("DROP CONSTRAINT") == 1


def test_a_different_constraint_with_the_name_is_not_touched(db: ConnInfo) -> None:
    execute(db, 'ALTER TABLE "Gift" ADD CONSTRAINT chk_gift_price_positive UNIQUE (name)')
    with context(db) as ctx:
        result = plan(ctx)
    [refusal] = [r for r in result.refused if r.object.endswith("chk_gift_price_positive")]
    assert refusal.reason.startswith("a unique constraint named chk_gift_price_positive")
    assert not [op for op in result.operations if op.table == ("public", "Gift")]


# -- export ------------------------------------------------------------------------------


def psql(info: ConnInfo, path: Path) -> str:
    done = run_psql(info, path)
    return done.stdout + done.stderr


def test_exported_scripts_run_with_psql(seeded_db: SeededDb, tmp_path: Path) -> None:
    info, naming, manifest = seeded_db
    with context(info) as ctx:
        script = STEP.export(ctx)
    forward, rollback = tmp_path / "06.sql", tmp_path / "rollback_06.sql"
    forward.write_text(script.forward)
    rollback.write_text(script.rollback)
    assert "SET lock_timeout = '100ms';" in script.forward
    assert "psql -X -v ON_ERROR_STOP=1 -f 06_constraints_validation.sql" in script.forward

    # with the seeded violations: warnings and listing queries, only the clean ones added
    out = psql(info, forward)
    for name, (logical, anomaly) in SEEDED_VIOLATIONS.items():
        table = naming.table(logical)
        assert f"WARNING: {manifest[anomaly]} rows violate {name} on public.{table}" in out
    # each printed query runs as printed (the email pattern's backslash survives psql)
    queries = [line for line in out.splitlines() if line.startswith("SELECT * FROM")]
    assert [len(listed(info, q)) for q in queries] == [
        manifest[a] for _, a in SEEDED_VIOLATIONS.values()
    ]
    assert {n: v for n, (_, v) in checks(info).items()} == dict.fromkeys(CLEAN, True)

    # with the violations fixed: all twelve, and a second run changes nothing
    create_audit_table(info, naming)
    with context(info) as ctx:
        fix_constraints(ctx, dry_run=False)
    psql(info, forward)
    assert "WARNING" not in psql(info, forward)
    assert {n: v for n, (_, v) in checks(info).items()} == dict.fromkeys(
        [*SEEDED_VIOLATIONS, *CLEAN], True
    )
    with context(info) as ctx:
        assert all(v.passed for v in verify(ctx))

    psql(info, rollback)
    assert checks(info) == {}
    assert rollback.read_text().count("DROP CONSTRAINT IF EXISTS") == 12
