"""Step `audit` (runbook script 04) on a real server, in both namings: the audit table, its
indexes, audit_log() with the runbook's exact signature, the optional row-change trigger,
verify, rollback and the exported psql scripts."""

from __future__ import annotations

import re
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from pgrunbook.change import ApplyPolicy, Journal, apply_operations, refs
from pgrunbook.change.step import Skip, StepContext, StepOptions, StepPlan
from pgrunbook.change.steps.audit import (
    STEP,
    audit_insert_sql,
    audit_rows_sql,
    audit_table,
    audit_target,
    export,
    plan,
    verify,
)
from pgrunbook.connect import connect
from pgrunbook.dsn import ConnInfo
from pgrunbook.profile import load_profile
from pgrunbook.resolve import snake
from pgrunbook.serverinfo import probe
from tests.support import FAST_RETRY, execute, rows, run_psql, scalar

NAMINGS = ["db", "snake_db"]
FAST = ApplyPolicy(lock_timeout_ms=100, budget_seconds=10, poll_seconds=0.05)
RUNBOOK_SIGNATURE = "UUID, VARCHAR, VARCHAR, VARCHAR, JSONB, JSONB, JSONB, VARCHAR, TEXT"
RUNBOOK_FUNCTION = f"audit_log({RUNBOOK_SIGNATURE})"  # as the runbook's rollback names it


class Names:
    """The names each naming gets."""

    def __init__(self, fixture: str) -> None:
        self.prisma = fixture == "db"
        self.table = "AuditLog" if self.prisma else "audit_logs"
        self.wallet = "Wallet" if self.prisma else "wallets"
        self.wallet_tx = "WalletTransaction" if self.prisma else "wallet_transactions"
        self.prefix = "idx_auditlog" if self.prisma else "idx_audit_logs"
        self.trigger = "trg_wallet_audit" if self.prisma else "trg_wallets_audit"

    def col(self, logical: str) -> str:
        return logical if self.prisma else snake(logical)

    def q(self, logical: str) -> str:
        """A column as the server prints it (quote_ident)."""
        name = self.col(logical)
        return name if re.fullmatch(r"[a-z_][a-z0-9_]*", name) else f'"{name}"'

    @property
    def qtable(self) -> str:
        return f'"{self.table}"' if self.prisma else self.table

    def indexes(self) -> list[str]:
        """pg_get_indexdef of the audit table's indexes, sorted."""
        t, ca = f"public.{self.qtable}", self.q("createdAt")
        pkey = '"AuditLog_pkey"' if self.prisma else "audit_logs_pkey"
        return sorted([
            f"CREATE UNIQUE INDEX {pkey} ON {t} USING btree (id)",
            f"CREATE INDEX {self.prefix}_created ON {t} USING btree ({ca} DESC)",
            f"CREATE INDEX {self.prefix}_entity_created ON {t} USING btree "
            f"({self.q('entityType')}, {self.q('entityId')}, {ca} DESC)",
            f"CREATE INDEX {self.prefix}_user_created ON {t} USING btree "
            f"({self.q('userId')}, {ca} DESC)",
        ])  # fmt: skip


def q(template: str, **names: str) -> sql.Composed:
    """Test SQL with identifiers composed in: ``q("SELECT * FROM {t}", t="Wallet")``."""
    return sql.SQL(template).format(**{k: sql.Identifier(v) for k, v in names.items()})


@pytest.fixture(autouse=True)
def _trigger_fingerprints(monkeypatch: pytest.MonkeyPatch) -> None:
    """refs.TRIGGER_SQL concatenates the "char" tgenabled without a cast, which the server
    rejects (operator is not unique: text || "char"); until the shared file casts it,
    fingerprint triggers with the same query, cast."""
    if "tgenabled::text" not in refs.TRIGGER_SQL:
        fixed = refs.TRIGGER_SQL.replace("t.tgenabled", "t.tgenabled::text")
        monkeypatch.setitem(refs._SQL, refs.RefKind.TRIGGER, fixed)


@contextmanager
def context(info: ConnInfo, tables: tuple[str, ...] | None = None) -> Iterator[StepContext]:
    with connect(info, autocommit=True, retry=FAST_RETRY) as conn:
        server = probe(conn, info=info)
        yield StepContext(conn, "public", server, load_profile(), StepOptions(audit_tables=tables))


def apply(ctx: StepContext, result: StepPlan) -> None:
    journal = Journal(ctx.conn)
    journal.ensure()
    apply_operations(ctx.conn, result.operations, journal, policy=FAST)
    ctx.refresh()


def rollback(ctx: StepContext, result: StepPlan) -> None:
    journal = Journal(ctx.conn)
    apply_operations(ctx.conn, list(reversed(result.operations)), journal,
                     action="rollback", policy=FAST)  # fmt: skip
    ctx.refresh()


# everything in schema public that a step could create, change or drop (snapshot() adds
# each table's row count and content checksum)
SNAPSHOT_SQL = """
SELECT 'rel ' || c.relname || ' ' || c.relkind::text FROM pg_class c
 WHERE c.relnamespace = 'public'::regnamespace
UNION ALL
SELECT 'col ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
       || ' ' || a.attnotnull || ' ' || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE c.relnamespace = 'public'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'idx ' || pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
 WHERE c.relnamespace = 'public'::regnamespace
UNION ALL
SELECT 'fn ' || p.oid::regprocedure::text || ' ' || md5(pg_get_functiondef(p.oid))
  FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace
UNION ALL
SELECT 'trg ' || pg_get_triggerdef(t.oid) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
 WHERE c.relnamespace = 'public'::regnamespace AND NOT t.tgisinternal
ORDER BY 1
"""


def snapshot(info: ConnInfo) -> list[str]:
    out = [str(r[0]) for r in rows(info, SNAPSHOT_SQL)]
    tables = rows(
        info,
        "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace"
        " AND relkind = 'r'",
    )
    for (name,) in sorted(tables):
        count = q("SELECT count(*), md5(string_agg(t::text, '' ORDER BY t::text)) FROM {t} t",
                  t=str(name))  # fmt: skip
        out.append(f"rows {name} {rows(info, count)[0]}")
    return out


def columns(info: ConnInfo, table: str) -> list[tuple[str, str, bool]]:
    return [
        (str(r[0]), str(r[1]), bool(r[2]))
        for r in rows(
            info,
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull"
            "  FROM pg_attribute a WHERE a.attrelid = %s::regclass AND a.attnum > 0"
            "   AND NOT a.attisdropped ORDER BY a.attnum",
            (sql.Identifier("public", table).as_string(),),
        )
    ]


def index_defs(info: ConnInfo, table: str) -> list[str]:
    return [
        str(r[0])
        for r in rows(
            info,
            "SELECT pg_get_indexdef(indexrelid) || CASE WHEN indisvalid THEN '' ELSE ' INVALID'"
            " END FROM pg_index WHERE indrelid = %s::regclass ORDER BY 1",
            (sql.Identifier("public", table).as_string(),),
        )
    ]


# -- round trip -------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", NAMINGS)
def test_plan_apply_verify_rollback(fixture: str, request: pytest.FixtureRequest) -> None:
    info: ConnInfo = request.getfixturevalue(fixture)
    n = Names(fixture)
    before = snapshot(info)
    with context(info, tables=("Wallet",)) as ctx:
        first = plan(ctx)
        objects = [op.object for op in first.operations]
        assert objects == [
            f"table public.{n.table}",
            f"index public.{n.prefix}_entity_created",
            f"index public.{n.prefix}_user_created",
            f"index public.{n.prefix}_created",
            "function public.audit_log",
            "function public.audit_row_change",
            f"trigger public.{n.wallet}.{n.trigger}",
        ]
        assert (first.present, first.skipped, first.refused) == ([], [], [])
        assert [op.transactional for op in first.operations] == [
            True, False, False, False, True, True, True,
        ]  # fmt: skip
        assert [op.lock for op in first.operations] == [
            "none",
            *[f"SHARE UPDATE EXCLUSIVE on public.{n.table}"] * 3,
            "none",
            "none",
            f"SHARE ROW EXCLUSIVE on public.{n.wallet}",
        ]
        table_op, *_, trigger_op = first.operations
        assert table_op.reverse_sql == f'DROP TABLE IF EXISTS "public"."{n.table}"'
        assert table_op.reverse().lock == f"ACCESS EXCLUSIVE on public.{n.table}"
        assert trigger_op.reverse().lock == f"ACCESS EXCLUSIVE on public.{n.wallet}"
        assert first.operations[4].reverse_sql == (
            f'DROP FUNCTION IF EXISTS "public"."audit_log"({RUNBOOK_SIGNATURE})'
        )
        assert all(op.creates and op.ref is not None for op in first.operations)
        assert snapshot(info) == before  # planning changes nothing

        apply(ctx, first)
        assert columns(info, n.table) == [
            (n.col("id"), "uuid", True),
            (n.col("userId"), "uuid", False),
            (n.col("action"), "character varying(100)", True),
            (n.col("entityType"), "character varying(100)", True),
            (n.col("entityId"), "character varying(255)", False),
            (n.col("oldValues"), "jsonb", False),
            (n.col("newValues"), "jsonb", False),
            (n.col("metadata"), "jsonb", False),
            (n.col("ipAddress"), "character varying(45)", False),
            (n.col("userAgent"), "text", False),
            (n.col("createdAt"), "timestamp(3) without time zone", True),
        ]
        assert index_defs(info, n.table) == n.indexes()

        again = plan(ctx)
        assert again.operations == []
        assert again.present == objects

        checks = verify(ctx)
        assert [(c.name, c.passed) for c in checks] == [
            ("audit table columns", True),
            ("audit table indexes", True),
            ("audit_log() signature", True),
            ("audit_log() writes a row", True),
            (f"row-change trigger on {n.wallet}", True),
        ]
        assert checks[3].details["created_at_utc"] is True
        assert checks[4].details["exercised"] is True
        # verify's writes were rolled back
        assert scalar(info, q("SELECT count(*) FROM {t}", t=n.table)) == 0

        rollback(ctx, first)
    assert snapshot(info) == before


@pytest.mark.parametrize("fixture", NAMINGS)
def test_audit_log_has_the_runbooks_signature(fixture: str, request: pytest.FixtureRequest) -> None:
    info: ConnInfo = request.getfixturevalue(fixture)
    n = Names(fixture)
    with context(info) as ctx:
        apply(ctx, plan(ctx))
    oid = scalar(info, "SELECT to_regprocedure(%s)::oid", (RUNBOOK_FUNCTION,))
    assert oid is not None
    assert scalar(info, "SELECT pg_get_function_identity_arguments(%s)", (oid,)) == (
        "p_user_id uuid, p_action character varying, p_entity_type character varying, "
        "p_entity_id character varying, p_old_values jsonb, p_new_values jsonb, "
        "p_metadata jsonb, p_ip_address character varying, p_user_agent text"
    )
    assert rows(info, "SELECT prorettype::regtype::text, proconfig FROM pg_proc WHERE oid = %s",
                (oid,)) == [("uuid", ["search_path=pg_catalog, pg_temp"])]  # fmt: skip

    # an app session in another time zone, with a search_path that does not include public
    user = uuid.uuid4()
    with psycopg.connect(info.conninfo()) as app:
        app.execute("SET TimeZone = 'Asia/Tokyo'")
        app.execute("SET search_path = pg_catalog")
        row_id = app.execute(
            "SELECT public.audit_log(%s, 'login', 'User', '42', NULL, %s::jsonb, NULL,"
            " '10.0.0.1', 'curl')",
            (user, '{"ok": true}'),
        ).fetchone()
        assert row_id is not None
        got = app.execute(
            q(
                "SELECT {u}, action, {e}, {ev}, {ip}, {ua}, {nv},"
                " abs(extract(epoch FROM {c} - (now() AT TIME ZONE 'UTC'))) < 0.001"
                "  FROM public.{t} WHERE id = %s",
                u=n.col("userId"),
                e=n.col("entityType"),
                ev=n.col("entityId"),
                ip=n.col("ipAddress"),
                ua=n.col("userAgent"),
                nv=n.col("newValues"),
                c=n.col("createdAt"),
                t=n.table,
            ),
            (row_id[0],),
        ).fetchone()
    assert got == (user, "login", "User", "42", "10.0.0.1", "curl", {"ok": True}, True)

    # the runbook's own rollback statement (section 6) drops exactly this function
    execute(info, "DROP FUNCTION IF EXISTS " + RUNBOOK_FUNCTION)
    assert scalar(info, "SELECT count(*) FROM pg_proc WHERE proname = 'audit_log'") == 0


# -- a table already there --------------------------------------------------------------


def test_incomplete_existing_table_is_refused_and_left_alone(db: ConnInfo, tmp_path: Path) -> None:
    execute(
        db,
        'CREATE TABLE "AuditLog" (id uuid PRIMARY KEY, action text NOT NULL,'
        ' "createdAt" timestamp NOT NULL DEFAULT now());'
        """INSERT INTO "AuditLog" VALUES ('00000000-0000-0000-0000-000000000001', 'x', now());""",
    )
    before = snapshot(db)
    with context(db, tables=("Wallet",)) as ctx:
        result = plan(ctx)
        assert result.operations == []
        [refusal] = result.refused
        assert refusal.object == "table public.AuditLog"
        assert refusal.details == {
            "missing": ["userId", "entityType", "entityId", "oldValues", "newValues",
                        "metadata", "ipAddress", "userAgent"],
        }  # fmt: skip
        assert "lacks the columns userId, entityType, entityId" in refusal.reason
        assert [s.object for s in result.skipped] == [
            "index public.idx_auditlog_entity_created",
            "index public.idx_auditlog_user_created",
            "index public.idx_auditlog_created",
            "function public.audit_log",
            "row-change trigger on Wallet",
        ]
        assert audit_table(ctx) is None
        assert [(c.name, c.passed) for c in verify(ctx)][:2] == [
            ("audit table columns", False),
            ("audit table indexes", False),
        ]
        script = export(ctx)
    # the exported script refuses the same way, and changes nothing
    path = tmp_path / "04_audit_logs.sql"
    path.write_text(script.forward)
    done = psql(db, path, check=False)
    assert done.returncode == 3
    assert (
        '"public"."AuditLog" exists without the audit columns userId, entityType, entityId, '
        "oldValues, newValues, metadata, ipAddress, userAgent" in done.stderr
    )
    assert snapshot(db) == before


def test_usable_existing_table_is_used_and_kept_on_rollback(db: ConnInfo) -> None:
    # as Prisma would create it: text types, id without a database default
    execute(
        db,
        'CREATE TABLE "AuditLog" (id uuid PRIMARY KEY, "userId" uuid, action text NOT NULL,'
        ' "entityType" text NOT NULL, "entityId" text, "oldValues" jsonb, "newValues" jsonb,'
        ' metadata jsonb, "ipAddress" text, "userAgent" text,'
        ' "createdAt" timestamp(3) NOT NULL DEFAULT CURRENT_TIMESTAMP);'
        'CREATE INDEX "AuditLog_createdAt_idx" ON "AuditLog" ("createdAt" DESC);'
        """INSERT INTO "AuditLog" (id, action, "entityType")
           VALUES ('00000000-0000-0000-0000-000000000001', 'seed', 'User');""",
    )
    before = snapshot(db)
    with context(db) as ctx:
        result = plan(ctx)
        assert result.present == [
            "table public.AuditLog",
            "index public.AuditLog_createdAt_idx (serves as idx_auditlog_created)",
        ]
        assert [op.object for op in result.operations] == [
            "index public.idx_auditlog_entity_created",
            "index public.idx_auditlog_user_created",
            "function public.audit_log",
        ]
        apply(ctx, result)
        assert audit_table(ctx) is not None
        assert all(c.passed for c in verify(ctx)), verify(ctx)
        rollback(ctx, result)
    assert snapshot(db) == before
    assert scalar(db, 'SELECT count(*) FROM "AuditLog"') == 1


def test_required_column_the_writers_leave_empty_is_refused(db: ConnInfo) -> None:
    execute(
        db,
        'CREATE TABLE "AuditLog" (id uuid PRIMARY KEY, "userId" uuid, action text NOT NULL,'
        ' "entityType" text NOT NULL, "entityId" uuid, "oldValues" jsonb, "newValues" jsonb,'
        ' metadata jsonb, "ipAddress" text, "userAgent" text,'
        ' "createdAt" timestamp(3) NOT NULL, "tenantId" int NOT NULL);',
    )
    with context(db) as ctx:
        [refusal] = plan(ctx).refused
    assert refusal.details == {
        "incompatible": ["entityId: uuid"],
        "required": ["createdAt", "tenantId"],
    }


# -- the row-change trigger ---------------------------------------------------------------


@pytest.mark.parametrize("fixture", NAMINGS)
def test_row_change_trigger_records_old_and_new_rows(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    info: ConnInfo = request.getfixturevalue(fixture)
    n = Names(fixture)
    with context(info, tables=("Wallet", "Nope", "AuditLog")) as ctx:
        result = plan(ctx)
        assert result.skipped == [
            Skip("row-change trigger on Nope", "table 'Nope' not found in schema public"),
            Skip("row-change trigger on AuditLog", "the audit table does not audit itself"),
        ]
        apply(ctx, result)
    user = uuid.uuid4()
    audit = q(
        "SELECT {user_id}, action, {entity_type}, {entity_id}, {old} ->> 'balance',"
        " {new} ->> 'balance', metadata ->> 'user_id_setting', metadata ? 'txid'"
        "  FROM {table} ORDER BY action = 'DELETE'",
        user_id=n.col("userId"), entity_type=n.col("entityType"), entity_id=n.col("entityId"),
        old=n.col("oldValues"), new=n.col("newValues"), table=n.table,
    )  # fmt: skip
    with psycopg.connect(info.conninfo()) as app:
        first = app.execute(q("SELECT id, balance FROM {w} ORDER BY id LIMIT 1", w=n.wallet))
        wallet_id, balance = first.fetchone() or (None, 0)
        assert wallet_id is not None
        app.execute("SELECT set_config('pgrunbook.user_id', %s, true)", (str(user),))
        app.execute(q("UPDATE {w} SET balance = balance + 5 WHERE id = %s", w=n.wallet),
                    (wallet_id,))  # fmt: skip
        app.commit()
        # a setting that is not a uuid does not fail the write
        app.execute("SET LOCAL pgrunbook.user_id = 'not-a-uuid'")
        app.execute(q("DELETE FROM {tx} WHERE {w_id} = %s", tx=n.wallet_tx,
                      w_id=n.col("walletId")), (wallet_id,))  # fmt: skip
        app.execute(q("DELETE FROM {w} WHERE id = %s", w=n.wallet), (wallet_id,))
        app.commit()
        got = app.execute(audit).fetchall()
    assert got == [
        (user, "UPDATE", n.wallet, str(wallet_id), str(balance), str(balance + 5), None, True),
        (None, "DELETE", n.wallet, str(wallet_id), str(balance + 5), None, "not-a-uuid", True),
    ]


# -- verify can fail ------------------------------------------------------------------------


def test_verify_fails_on_what_is_missing(db: ConnInfo) -> None:
    with context(db, tables=("Wallet",)) as ctx:
        assert [(c.name, c.passed) for c in verify(ctx)] == [
            ("audit table columns", False),
            ("audit table indexes", False),
            ("audit_log() signature", False),
            ("audit_log() writes a row", False),
            ("row-change trigger on Wallet", False),
        ]
        apply(ctx, plan(ctx))
        execute(db, "DROP INDEX idx_auditlog_user_created; ALTER TABLE \"Wallet\""
                    " DISABLE TRIGGER trg_wallet_audit")  # fmt: skip
        ctx.refresh()
        checks = {c.name: c for c in verify(ctx)}
    assert checks["audit table indexes"].passed is False
    assert checks["audit table indexes"].details["indexes"] == {
        "idx_auditlog_entity_created": "valid",
        "idx_auditlog_user_created": "missing",
        "idx_auditlog_created": "valid",
    }
    assert checks["row-change trigger on Wallet"].passed is False
    assert checks["row-change trigger on Wallet"].details["enabled"] is False
    assert checks["audit_log() writes a row"].passed is True


def test_invalid_index_is_rebuilt(db: ConnInfo) -> None:
    with context(db) as ctx:
        apply(ctx, plan(ctx))
        execute(db, "UPDATE pg_index SET indisvalid = false"
                    " WHERE indexrelid = 'idx_auditlog_created'::regclass")  # fmt: skip
        ctx.refresh()
        result = plan(ctx)
        assert [op.object for op in result.operations] == [
            "invalid index public.idx_auditlog_created",
            "index public.idx_auditlog_created",
        ]
        apply(ctx, result)
        assert plan(ctx).operations == []
    assert "INVALID" not in " ".join(index_defs(db, "AuditLog"))


# -- functions already there --------------------------------------------------------------


def test_other_audit_log_is_replaced_and_restored(db: ConnInfo) -> None:
    execute(
        db,
        "CREATE FUNCTION audit_log(p_user_id UUID, p_action VARCHAR, p_entity_type VARCHAR,"
        " p_entity_id VARCHAR, p_old_values JSONB, p_new_values JSONB, p_metadata JSONB,"
        " p_ip_address VARCHAR, p_user_agent TEXT) RETURNS uuid LANGUAGE sql"
        " AS $$ SELECT gen_random_uuid() $$;"
        "CREATE FUNCTION audit_log(uid UUID, act VARCHAR, et VARCHAR, eid VARCHAR, o JSONB,"
        " n JSONB, m JSONB, ip VARCHAR, ua TEXT, extra int) RETURNS void LANGUAGE sql AS $$ $$;",
    )
    old = scalar(db, "SELECT pg_get_functiondef(%s::regprocedure)", (RUNBOOK_FUNCTION,))
    before = snapshot(db)
    with context(db) as ctx:
        result = plan(ctx)
        [op] = [op for op in result.operations if op.object == "function public.audit_log"]
        assert op.sql.startswith('CREATE OR REPLACE FUNCTION "public"."audit_log"(')
        # CREATE OR REPLACE cannot take back the defaults ours adds: drop, then restore
        drop = f'DROP FUNCTION IF EXISTS "public"."audit_log"({RUNBOOK_SIGNATURE})'
        assert op.reverse_sql == f"{drop};\n{old}" and op.creates is False
        assert result.warnings == [
            "function public.audit_log exists with another definition: it is replaced "
            "(rollback restores the old one)"
        ]
        apply(ctx, result)
        assert all(c.passed for c in verify(ctx))
        rollback(ctx, result)
    assert snapshot(db) == before


def test_audit_log_with_other_parameter_names_is_dropped_and_created(db: ConnInfo) -> None:
    execute(
        db,
        "CREATE FUNCTION audit_log(user_id UUID, action VARCHAR, entity_type VARCHAR,"
        " entity_id VARCHAR, old_values JSONB, new_values JSONB, metadata JSONB,"
        " ip_address VARCHAR, user_agent TEXT) RETURNS uuid LANGUAGE sql"
        " AS $$ SELECT gen_random_uuid() $$;",
    )
    before = snapshot(db)
    with context(db) as ctx:
        result = plan(ctx)
        [op] = [op for op in result.operations if op.object == "function public.audit_log"]
        assert op.sql.startswith(
            f'DROP FUNCTION IF EXISTS "public"."audit_log"({RUNBOOK_SIGNATURE});\n'
            'CREATE OR REPLACE FUNCTION "public"."audit_log"('
        )
        apply(ctx, result)
        assert plan(ctx).operations == []
        rollback(ctx, result)
    assert snapshot(db) == before


def test_a_procedure_with_that_signature_is_refused(db: ConnInfo) -> None:
    execute(db, "CREATE PROCEDURE " + RUNBOOK_FUNCTION + " LANGUAGE sql AS $$ SELECT 1 $$")
    with context(db) as ctx:
        result = plan(ctx)
    assert "function public.audit_log" not in [op.object for op in result.operations]
    [refusal] = result.refused
    assert (refusal.object, refusal.details) == (
        "function public.audit_log", {"kind": "p", "owned": True},
    )  # fmt: skip
    assert refusal.reason.startswith('"public"."audit_log"(UUID, VARCHAR, VARCHAR, VARCHAR,')
    assert refusal.reason.endswith("already exists and is not a function, so pgrunbook "
                                   "cannot replace it")  # fmt: skip


# -- helpers for other steps ----------------------------------------------------------------


@pytest.mark.parametrize("fixture", NAMINGS)
def test_audit_rows_sql_records_rows_before_a_change(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    info: ConnInfo = request.getfixturevalue(fixture)
    n = Names(fixture)
    with context(info) as ctx:
        assert audit_table(ctx) is None
        apply(ctx, plan(ctx))
        table = audit_table(ctx)
        assert table is not None and table.name == n.table
        columns = ", ".join(f'"{n.col(c)}"' for c in ("id", "action", "entityType",
                            "entityId", "oldValues", "newValues", "metadata"))  # fmt: skip
        assert audit_insert_sql(ctx).as_string() == (
            f'INSERT INTO "public"."{n.table}" ({columns}) '
        )
        wallets = ctx.table("Wallet")
        assert wallets is not None
        negative = scalar(info, q("SELECT count(*) FROM {w} WHERE balance < 0", w=n.wallet))
        assert isinstance(negative, int) and negative > 0
        statement = audit_rows_sql(ctx, wallets, sql.SQL("t.balance < 0"), action="fix",
                                   metadata={"constraint": "chk_x", "note": "it's"})  # fmt: skip
        ctx.conn.execute(statement)
    got = rows(
        info,
        q(
            "SELECT count(*), count(DISTINCT {eid}), bool_and(({old} ->> 'balance')::int < 0),"
            " bool_and({new} IS NULL), min(metadata ->> 'note'), min({et})"
            "  FROM {t} WHERE action = 'fix'",
            eid=n.col("entityId"),
            old=n.col("oldValues"),
            new=n.col("newValues"),
            et=n.col("entityType"),
            t=n.table,
        ),
    )
    assert got == [(negative, negative, True, True, "it's", n.wallet)]


def test_audit_target_names_a_new_table_the_databases_way(db: ConnInfo, snake_db: ConnInfo) -> None:
    with context(db) as ctx:
        target = audit_target(ctx)
        assert (target.name, target.exists, target.columns["entityType"]) == (
            "AuditLog", False, "entityType",
        )  # fmt: skip
    with context(snake_db) as ctx:
        target = audit_target(ctx)
        assert (target.name, target.columns["entityType"], target.index_name("created")) == (
            "audit_logs", "entity_type", "idx_audit_logs_created",
        )  # fmt: skip


# -- export -------------------------------------------------------------------------------


def psql(info: ConnInfo, path: Path, *, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run_psql(info, path, check=check)


@pytest.mark.parametrize("fixture", NAMINGS)
def test_exported_scripts_run_with_psql(
    fixture: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    info: ConnInfo = request.getfixturevalue(fixture)
    n = Names(fixture)
    before = snapshot(info)
    with context(info, tables=("Wallet",)) as ctx:
        script = export(ctx)
    assert "psql -X -v ON_ERROR_STOP=1 -f 04_audit_logs.sql" in script.forward
    assert "SET LOCAL lock_timeout = '100ms';" in script.forward
    assert f'CREATE TABLE IF NOT EXISTS "public"."{n.table}" (' in script.forward
    assert f'CREATE INDEX IF NOT EXISTS "{n.prefix}_created" ON' in script.forward
    assert "CREATE OR REPLACE TRIGGER" in script.forward
    assert (
        f'DROP FUNCTION IF EXISTS "public"."audit_log"({RUNBOOK_SIGNATURE});\n'
        f'DROP TABLE IF EXISTS "public"."{n.table}" CASCADE;\nCOMMIT;\n'
    ) in script.rollback
    forward, back = tmp_path / "04_audit_logs.sql", tmp_path / "rollback_04_audit_logs.sql"
    forward.write_text(script.forward)
    back.write_text(script.rollback)

    psql(info, forward)
    psql(info, forward)  # idempotent
    with context(info, tables=("Wallet",)) as ctx:
        result = plan(ctx)
        assert result.operations == [] and len(result.present) == 7
        assert all(c.passed for c in verify(ctx))
    assert index_defs(info, n.table) == n.indexes()  # the same indexes apply builds
    psql(info, back)
    psql(info, back)  # safe to run again
    assert snapshot(info) == before


def test_step_is_registered() -> None:
    from pgrunbook.change.steps import STEPS

    assert STEP in STEPS
    assert (STEP.id, STEP.number, STEP.script_name) == ("audit", 4, "04_audit_logs")
