"""``06_constraints_validation.sql`` and its rollback, from the same ``Target`` statements the
plan runs.

Per constraint the script counts the violating rows (``\\gset``); when there are any it
prints how many and the query listing them (``\\echo``) and leaves the constraint out, as
``plan`` refuses it; otherwise it adds it NOT VALID if missing (a ``DO`` block testing the
catalog) and validates it. Every statement is its own transaction: the ADD's ACCESS
EXCLUSIVE lock is released before the validation reads the table.
"""

from __future__ import annotations

from typing import Final

from psycopg import sql

from pgrunbook import __version__
from pgrunbook.change.runner import ApplyPolicy
from pgrunbook.change.step import Script, Skip, StepContext
from pgrunbook.change.steps.constraints.statements import FIX_COMMAND, Target, resolve
from pgrunbook.violations import listing_query

SCRIPT: Final = "06_constraints_validation.sql"
LOCK_TIMEOUT_MS: Final = ApplyPolicy().lock_timeout_ms

HEADER: Final = """\
-- {script}: the runbook's CHECK constraints for schema {schema} (pgrunbook {version}).
-- Per constraint: count the rows that violate it; if there are any, print the count and the
-- query that lists them and leave the constraint out (a NOT VALID constraint is still checked
-- on every new row version, so any UPDATE of a violating row would fail); otherwise add it
-- NOT VALID (a brief ACCESS EXCLUSIVE lock, no scan) if it is missing, then VALIDATE it
-- (SHARE UPDATE EXCLUSIVE: reads and writes go on). Safe to run again.
-- Run it without a transaction wrapper: psql -X -v ON_ERROR_STOP=1 -f {script} "$DIRECT_URL"
-- It sets lock_timeout = {lock_ms}ms, so a statement gives up instead of making the app's
-- queries queue behind it; if one does, run the script again at a quieter moment.
-- Fix violating rows with `{fix}` (or by hand), then run it again.
SET lock_timeout = '{lock_ms}ms';
"""

ROLLBACK_HEADER: Final = """\
-- rollback of {script}: drop the runbook's CHECK constraints (section 6) in schema {schema}.
-- Run: psql -X -v ON_ERROR_STOP=1 -f rollback_{script} "$DIRECT_URL"
-- It sets lock_timeout = {lock_ms}ms (each DROP takes a brief ACCESS EXCLUSIVE lock).
SET lock_timeout = '{lock_ms}ms';
"""

# no scan at all once the constraint exists validated (the NOT EXISTS is a one-time filter)
COUNT_SQL: Final = sql.SQL(
    "SELECT count(*) AS violations, count(*) > 0 AS has_violations\n"
    "  FROM {table} AS t\n"
    " WHERE {violation}\n"
    "   AND NOT EXISTS (SELECT 1 FROM pg_constraint\n"
    "                    WHERE conrelid = {regclass}::regclass AND conname = {name}\n"
    "                      AND convalidated) \\gset"
)
ADD_IF_MISSING_SQL: Final = sql.SQL(
    "DO $pgrunbook$\n"
    "BEGIN\n"
    "    IF NOT EXISTS (SELECT 1 FROM pg_constraint\n"
    "                    WHERE conrelid = {regclass}::regclass AND conname = {name}) THEN\n"
    "        {add};\n"
    "    END IF;\n"
    "END\n"
    "$pgrunbook$;"
)


def psql_quoted(text: str) -> str:
    """``text`` as one single-quoted psql meta-command argument (backslashes and quotes
    doubled: psql reads ``\\.`` in such an argument as ``.``)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def _block(target: Target) -> str:
    table = sql.Identifier(target.table.schema, target.table.name)
    regclass = sql.Literal(table.as_string())
    name = sql.Literal(target.name)
    listing = listing_query(target.table, target.violation).as_string()
    warning = (
        f"rows violate {target.name} on {target.table.qualified}: not added or validated "
        f"(any UPDATE of them would fail); fix them ({FIX_COMMAND}, or by hand), then run "
        "this again. They are:"
    )
    count = COUNT_SQL.format(
        table=table, violation=target.violation, regclass=regclass, name=name
    ).as_string()
    add = ADD_IF_MISSING_SQL.format(
        regclass=regclass, name=name, add=sql.SQL(target.add_sql())
    ).as_string()
    return "\n".join(
        [
            f"-- {target.name} on {target.table.qualified}: CHECK ({target.check_text})",
            count,
            "\\if :has_violations",
            f"\\echo 'WARNING:' :violations {psql_quoted(warning)}",
            f"\\echo {psql_quoted(listing + ';')}",
            "\\else",
            add,
            f"{target.validate_sql()};",
            "\\endif",
            "",
        ]
    )


def _targets(ctx: StepContext) -> list[Target | Skip]:
    return [resolve(ctx, spec) for spec in ctx.profile.constraints]


def export(ctx: StepContext) -> Script:
    """The psql script for this database's names, and its rollback (runbook section 6)."""
    fields = {"script": SCRIPT, "schema": ctx.schema, "version": __version__,
              "lock_ms": LOCK_TIMEOUT_MS, "fix": FIX_COMMAND}  # fmt: skip
    forward = [HEADER.format(**fields)]
    rollback = [ROLLBACK_HEADER.format(**fields)]
    for target in _targets(ctx):
        if isinstance(target, Skip):
            line = f"-- skipped {target.object}: {target.reason}"
            forward.append(line + "\n")
            rollback.append(line)
            continue
        forward.append(_block(target))
        rollback.append(f"{target.drop_sql()};")
    return Script("\n".join(forward), "\n".join(rollback) + "\n")
