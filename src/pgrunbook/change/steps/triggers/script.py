"""``03_updated_at_trigger.sql`` and its rollback, from the same definitions and the same
analysis as ``plan()``.

The forward script is one transaction: ``CREATE OR REPLACE FUNCTION`` for both functions,
then ``CREATE OR REPLACE TRIGGER`` (PostgreSQL 14+) for every table the plan gives a trigger
(including the ones already there, so the script is idempotent). The rollback is the
runbook's section 6 loop, limited to this schema's ``trg_*_updated_at`` triggers that call
our two functions (a trigger of that name calling something else is not ours; dropping the
functions would fail on it anyway), then the two ``DROP FUNCTION IF EXISTS``.
"""

from __future__ import annotations

from typing import Final

from psycopg import sql

from pgrunbook import __version__
from pgrunbook.change.runner import ApplyPolicy
from pgrunbook.change.step import Script, StepContext
from pgrunbook.change.steps.triggers.definitions import (
    COLUMNS,
    FUNCTIONS,
    create_function,
    create_trigger,
    drop_function,
)
from pgrunbook.change.steps.triggers.planning import Target, analyse

SCRIPT: Final = "03_updated_at_trigger.sql"
LOCK_TIMEOUT_MS: Final = ApplyPolicy().lock_timeout_ms

HEADER: Final = """\
-- {script}: the runbook's updatedAt triggers for schema {schema} (pgrunbook {version}).
-- Creates or replaces update_updated_at_camel() (sets "updatedAt") and
-- update_updated_at_snake() (sets updated_at), and a trg_<table>_updated_at
-- BEFORE UPDATE ... FOR EACH ROW trigger on each table listed below. A timestamp column
-- (Prisma's DateTime, holding UTC) gets the UTC time whatever the session's TimeZone
-- (argument 'utc'); a timestamptz column gets now() (argument 'tz').
-- An existing function of those names is replaced without keeping its old definition
-- (`pgrunbook apply triggers` records it, so its rollback can restore it).
-- Idempotent (CREATE OR REPLACE; PostgreSQL 14+): safe to run again.
-- Run: psql -X -v ON_ERROR_STOP=1 -f {script} "$DIRECT_URL"
-- One transaction. CREATE TRIGGER holds a SHARE ROW EXCLUSIVE lock on its table until
-- COMMIT (writes wait, reads do not); lock_timeout = {lock_ms}ms makes the script stop,
-- changing nothing, instead of making the app queue behind it: then run it again.
-- Undo: rollback_{script}
"""

ROLLBACK_HEADER: Final = """\
-- rollback of {script}: the runbook's section 6 "Rollback Triggers" for schema
-- {schema}: drop every trg_*_updated_at trigger that calls update_updated_at_camel() or
-- update_updated_at_snake(), then the two functions.
-- Run: psql -X -v ON_ERROR_STOP=1 -f rollback_{script} "$DIRECT_URL"
-- One transaction; lock_timeout = {lock_ms}ms (DROP TRIGGER takes a brief ACCESS EXCLUSIVE
-- lock on its table). Safe to run again.
"""

BEGIN: Final = "BEGIN;\nSET LOCAL lock_timeout = '{lock_ms}ms';\n"
COMMIT: Final = "COMMIT;\n"

ROLLBACK_LOOP: Final = sql.SQL(
    """DO {tag}
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT t.tgname, c.relname
          FROM pg_catalog.pg_trigger t
          JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
          JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid
          JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace
         WHERE n.nspname = {schema} AND t.tgname ~ '^trg_.+_updated_at$'
           AND NOT t.tgisinternal AND t.tgparentid = 0  -- partitions' clones go with it
           AND pn.nspname = {schema} AND p.pronargs = 0
           AND p.proname IN ({functions})
    LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS %I ON %I.%I', r.tgname, {schema}, r.relname);
    END LOOP;
END
{tag};"""
)


def comment_text(text: str) -> str:
    """``text`` safe inside a ``--`` comment line (a name may hold a line break)."""
    return "".join(ch if ch.isprintable() else "?" for ch in text)


def dollar_tag(base: str, inside: str) -> str:
    """A dollar-quote tag that does not occur in ``inside``."""
    tag, n = f"${base}$", 0
    while tag in inside:
        n += 1
        tag = f"${base}{n}$"
    return tag


def _table_line(target: Target) -> str:
    arg = target.mode.value
    return comment_text(
        f"--   {target.table.name}.{target.column.name} ({target.column.type}, '{arg}'): "
        f"{target.trigger}"
    )


def export(ctx: StepContext) -> Script:
    analysis = analyse(ctx)
    schema = comment_text(ctx.schema)
    fmt = {"script": SCRIPT, "schema": schema, "version": __version__, "lock_ms": LOCK_TIMEOUT_MS}
    ours = [t for t in analysis.targets if t.as_wanted]
    lines = [HEADER.format(**fmt)]
    lines.append(f"-- Tables ({len(ours)}):")
    lines += [_table_line(t) for t in ours] or ["--   (none)"]
    refused = [f.refusal for f in analysis.functions if f.refusal is not None]
    left = [f"{r.object}: {r.reason} (fix: {r.fix})" for r in refused]
    left += [f"{s.object}: {s.reason}" for s in analysis.skipped]
    left += [f"{t.object}: {t.problem}" for t in analysis.targets if t.problem]
    if left:
        lines.append("-- Left alone:")
        lines += [comment_text(f"--   {text}") for text in left]
    lines.append(BEGIN.format(**fmt))
    for fn in analysis.functions:
        if fn.state != "refused":
            lines.append(create_function(ctx.schema, fn.column, replace=True).as_string() + ";\n")
    for t in ours:
        statement = create_trigger(
            t.table.schema, t.table.name, t.trigger, t.column.name, t.mode, replace=True
        )
        lines.append(statement.as_string() + ";")
    lines.append(COMMIT)
    return Script("\n".join(lines), rollback(ctx.schema))


def rollback(schema: str) -> str:
    fmt = {"script": SCRIPT, "schema": comment_text(schema), "lock_ms": LOCK_TIMEOUT_MS}
    literal = sql.Literal(schema).as_string()
    loop = ROLLBACK_LOOP.format(
        tag=sql.SQL(dollar_tag("pgrunbook", literal)),
        schema=sql.Literal(schema),
        functions=sql.SQL(", ").join(sql.Literal(FUNCTIONS[c]) for c in COLUMNS),
    )
    drops = [drop_function(schema, c).as_string() + ";" for c in COLUMNS]
    parts = [ROLLBACK_HEADER.format(**fmt), BEGIN.format(**fmt), loop.as_string(), "", *drops]
    return "\n".join([*parts, COMMIT])
