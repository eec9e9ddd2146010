"""``04_audit_logs.sql`` and its rollback, from the same statements ``plan()`` runs.

The forward script is one transaction: ``CREATE TABLE IF NOT EXISTS``, a guard that stops
the script when a table already there lacks audit columns (``plan`` refuses it the same
way), plain ``CREATE INDEX IF NOT EXISTS`` (the table is new and empty, so the build is
instant; ``apply`` builds them CONCURRENTLY), ``CREATE OR REPLACE FUNCTION`` and, for the
row-change tables, ``CREATE OR REPLACE TRIGGER``. The rollback is the runbook's section 6
(``DROP FUNCTION IF EXISTS audit_log(...)``, ``DROP TABLE IF EXISTS ... CASCADE``) plus the
row-change triggers and their function.
"""

from __future__ import annotations

from typing import Final

from psycopg import sql

from pgrunbook import __version__
from pgrunbook.change.runner import ApplyPolicy
from pgrunbook.change.step import Script, StepContext
from pgrunbook.change.steps.audit.ddl import (
    INDEXES,
    ROW_CHANGE,
    TRIGGER_SUFFIX,
    audit_log,
    create_index,
    create_table,
    create_trigger,
    drop_table,
    drop_trigger,
    row_change,
    trigger_name,
)
from pgrunbook.change.steps.audit.plan import audited_tables, is_row_change_trigger, serves
from pgrunbook.change.steps.audit.target import AuditTarget, audit_target

SCRIPT: Final = "04_audit_logs.sql"
LOCK_TIMEOUT_MS: Final = ApplyPolicy().lock_timeout_ms
CREATE_OR_REPLACE_TRIGGER_MAJOR: Final = 14

HEADER: Final = """\
-- {script}: the runbook's audit log for schema {schema} (pgrunbook {version}).
-- Creates, when missing:
--   table {table}: who did what to which object, old and new values as jsonb
--   its lookup indexes {indexes}
-- Creates or replaces:
--   {schema}.audit_log(UUID, VARCHAR, VARCHAR, VARCHAR, JSONB, JSONB, JSONB, VARCHAR, TEXT),
--   which writes one audit row and returns its id{row_change}
-- A table of that name that lacks audit columns stops the script (it is never altered).
-- The indexes are built with a plain CREATE INDEX: the table is new and empty, so that is
-- instant (on an audit table that already holds many rows it blocks writes to that table
-- only, while it builds; `pgrunbook apply audit` builds them CONCURRENTLY).
-- Idempotent: safe to run again.
-- Run: psql -X -v ON_ERROR_STOP=1 -f {script} "$DIRECT_URL"
-- One transaction; lock_timeout = {lock_ms}ms: if a lock is not free within that, the script
-- stops, changing nothing, instead of making the app queue behind it: run it again.
-- Undo: rollback_{script}
"""

ROLLBACK_HEADER: Final = """\
-- rollback of {script}: the runbook's section 6 "Rollback Audit Log" for schema {schema}:
-- the row-change triggers (trg_*_audit calling {schema}.audit_row_change()) and that
-- function, then DROP FUNCTION audit_log(...) and DROP TABLE ... CASCADE of
--   {table}
-- The audit rows are deleted with the table: export them first if you need them.
-- Run: psql -X -v ON_ERROR_STOP=1 -f rollback_{script} "$DIRECT_URL"
-- One transaction; lock_timeout = {lock_ms}ms (each DROP takes a brief ACCESS EXCLUSIVE
-- lock). Safe to run again.
"""

BEGIN: Final = "BEGIN;\nSET LOCAL lock_timeout = '{lock_ms}ms';\n"
COMMIT: Final = "COMMIT;\n"

# stop the script when a table already there lacks audit columns
GUARD_SQL: Final = sql.SQL("""DO $pgrunbook$
DECLARE
    missing text;
BEGIN
    SELECT string_agg(x.c, ', ' ORDER BY x.n) INTO missing
      FROM unnest({columns}::text[]) WITH ORDINALITY AS x(c, n)
     WHERE NOT EXISTS (SELECT 1 FROM pg_attribute a
                        WHERE a.attrelid = {regclass}::regclass AND a.attname = x.c
                          AND a.attnum > 0 AND NOT a.attisdropped);
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION '% exists without the audit columns %', {regclass}, missing
            USING HINT = 'pgrunbook never alters a table it did not create: add them '
                         'yourself, or name another audit table in the profile';
    END IF;
END
$pgrunbook$""")

# every trg_*_audit trigger of the schema that runs audit_row_change() (none if it is gone)
DROP_ROW_CHANGE_TRIGGERS_SQL: Final = sql.SQL("""DO $pgrunbook$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT t.tgname, c.relname
               FROM pg_trigger t
               JOIN pg_class c ON c.oid = t.tgrelid
              WHERE c.relnamespace = {schema}::regnamespace AND NOT t.tgisinternal
                AND left(t.tgname, 4) = 'trg_' AND right(t.tgname, {length}) = {suffix}
                AND t.tgfoid = to_regprocedure({function})
    LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS %I ON %I.%I', r.tgname, {schema}, r.relname);
    END LOOP;
END
$pgrunbook$""")


def _statement(query: sql.Composable) -> str:
    return query.as_string() + ";\n"


def _forward_body(ctx: StepContext, target: AuditTarget) -> list[str]:
    out = [_statement(create_table(target, if_not_exists=True))]
    columns = [target.columns[logical] for logical in target.columns]
    out.append(_statement(GUARD_SQL.format(
        columns=sql.Literal(columns), regclass=sql.Literal(target.identifier.as_string())
    )))  # fmt: skip
    table = target.table
    for spec in INDEXES:
        other = None
        if table is not None and all(i.name != target.index_name(spec.suffix)
                                     for i in table.indexes):  # fmt: skip
            other = next((i for i in table.indexes if serves(table, i, target, spec)), None)
        if other is not None:
            out.append(f"-- {target.index_name(spec.suffix)}: served by {other.name}\n")
        else:
            out.append(_statement(create_index(target, spec, concurrently=False)))
    out.append(_statement(audit_log(target).create()))
    tables = audited_tables(ctx, target, None)
    if tables:
        out.append(_statement(row_change(target).create()))
    replace = ctx.server.major >= CREATE_OR_REPLACE_TRIGGER_MAJOR
    for audited in tables:
        name = trigger_name(audited.name)
        existing = next((t for t in audited.triggers if t.name == name), None)
        if existing is not None and not is_row_change_trigger(existing, ctx.schema):
            out.append(f"-- {audited.qualified}: its trigger {name} is not pgrunbook's; "
                       "left alone\n")  # fmt: skip
            continue
        if not replace:
            out.append(_statement(drop_trigger(audited.schema, audited.name)))
        out.append(_statement(create_trigger(audited.schema, audited.name, or_replace=replace)))
    return out


def export(ctx: StepContext) -> Script:
    target = audit_target(ctx)
    tables = audited_tables(ctx, target, None)
    row_change_note = (
        ";\n--   the trigger function audit_row_change() and an AFTER INSERT OR UPDATE OR DELETE"
        f"\n--   row-change trigger on {', '.join(t.name for t in tables)}"
        if tables
        else ""
    )
    head = dict(
        script=SCRIPT,
        schema=ctx.schema,
        version=__version__,
        table=target.identifier.as_string(),
        indexes=", ".join(target.index_name(i.suffix) for i in INDEXES),
        row_change=row_change_note,
        lock_ms=LOCK_TIMEOUT_MS,
    )
    forward = HEADER.format(**head) + BEGIN.format(**head)
    forward += "".join(_forward_body(ctx, target)) + COMMIT

    rollback = ROLLBACK_HEADER.format(**head) + BEGIN.format(**head)
    function = sql.Identifier(ctx.schema, ROW_CHANGE) + sql.SQL("()")
    rollback += _statement(DROP_ROW_CHANGE_TRIGGERS_SQL.format(
        schema=sql.Literal(ctx.schema),
        length=sql.Literal(len(TRIGGER_SUFFIX)),
        suffix=sql.Literal(TRIGGER_SUFFIX),
        function=sql.Literal(function.as_string()),
    ))  # fmt: skip
    rollback += _statement(row_change(target).drop())
    rollback += _statement(audit_log(target).drop())
    rollback += _statement(drop_table(target, cascade=True)) + COMMIT
    return Script(forward, rollback)
