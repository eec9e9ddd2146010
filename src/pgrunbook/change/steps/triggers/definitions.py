"""The objects step 03 makes, as SQL: the two functions and a trigger per table.

``plan()`` and ``export()`` both render from here, so the script a user runs with psql and
the operations ``apply`` runs are the same statements.

What is written must match what the app writes. Prisma's ``DateTime`` is ``timestamp(3)
without time zone`` holding UTC, so for such a column the function writes ``now() AT TIME
ZONE 'UTC'`` whatever the session's ``TimeZone``; for a ``timestamptz`` column it writes
``now()``. The trigger tells the function which by its argument (``'utc'`` or ``'tz'``);
a trigger created without one (an older runbook script) gets the choice from the column's
type.
"""

from __future__ import annotations

from enum import Enum
from typing import Final

from psycopg import sql

from pgrunbook.discover.checks.updated_at_triggers import RUNBOOK_FUNCTIONS
from pgrunbook.resolve import snake

ID: Final = "triggers"

# the columns the step maintains, in the order it prefers them when a table has both
COLUMNS: Final[tuple[str, ...]] = ("updatedAt", "updated_at")
FUNCTIONS: Final[dict[str, str]] = RUNBOOK_FUNCTIONS  # column -> the runbook's function

NAME_MAX_BYTES: Final = 63  # NAMEDATALEN - 1: longer identifiers are cut by the server
TRIGGER_PREFIX: Final = "trg_"
TRIGGER_SUFFIX: Final = "_updated_at"


class Mode(Enum):
    """What the trigger writes, by the column's type (the trigger's argument)."""

    UTC = "utc"  # timestamp without time zone holding UTC (Prisma's DateTime)
    TZ = "tz"  # timestamptz

    @property
    def expected(self) -> sql.SQL:
        """The value the trigger writes, as SQL (``verify`` compares with it)."""
        return UTC_NOW if self is Mode.UTC else TZ_NOW


UTC_NOW: Final = sql.SQL("pg_catalog.now() AT TIME ZONE 'UTC'")
TZ_NOW: Final = sql.SQL("pg_catalog.now()")

# pg_type oids of the column types the trigger can set
TIMESTAMP_OID: Final = 1114
TIMESTAMPTZ_OID: Final = 1184
MODES: Final[dict[int, Mode]] = {TIMESTAMP_OID: Mode.UTC, TIMESTAMPTZ_OID: Mode.TZ}

# The function's body: its source (pg_proc.prosrc) is compared with this to tell whether an
# existing function of the name is ours. Schema-independent: it names only the column.
BODY: Final = sql.SQL(
    """
BEGIN
    -- 'utc': timestamp without time zone holding UTC (Prisma's DateTime); 'tz': timestamptz.
    -- No argument: decided by the column's type.
    IF coalesce(TG_ARGV[0], CASE pg_catalog.pg_typeof(NEW.{column})
                                WHEN 'timestamp with time zone'::pg_catalog.regtype THEN 'tz'
                                ELSE 'utc' END) = 'tz' THEN
        NEW.{column} := pg_catalog.now();
    ELSE
        NEW.{column} := pg_catalog.now() AT TIME ZONE 'UTC';
    END IF;
    RETURN NEW;
END
"""
)

CREATE_FUNCTION: Final = sql.SQL(
    "{create} FUNCTION {function}()\n RETURNS trigger\n LANGUAGE plpgsql\n"
    "AS $function${body}$function$"
)
DROP_FUNCTION: Final = sql.SQL("DROP FUNCTION IF EXISTS {function}()")

CREATE_TRIGGER: Final = sql.SQL(
    "{create} TRIGGER {trigger} BEFORE UPDATE ON {table}\n"
    "    FOR EACH ROW EXECUTE FUNCTION {function}({mode})"
)
DROP_TRIGGER: Final = sql.SQL("DROP TRIGGER IF EXISTS {trigger} ON {table}")

_CREATE: Final = sql.SQL("CREATE")
_CREATE_OR_REPLACE: Final = sql.SQL("CREATE OR REPLACE")


def function_body(column: str) -> str:
    """The function's source text (what ``pg_proc.prosrc`` holds once it is created)."""
    return BODY.format(column=sql.Identifier(column)).as_string()


def create_function(schema: str, column: str, *, replace: bool) -> sql.Composed:
    return CREATE_FUNCTION.format(
        create=_CREATE_OR_REPLACE if replace else _CREATE,
        function=sql.Identifier(schema, FUNCTIONS[column]),
        body=sql.SQL(function_body(column)),  # our own text, composed from an Identifier
    )


def drop_function(schema: str, column: str) -> sql.Composed:
    return DROP_FUNCTION.format(function=sql.Identifier(schema, FUNCTIONS[column]))


def trigger_name(table: str) -> str:
    """``trg_<table in snake_case>_updated_at``, at most 63 bytes.

    A long name is cut in its middle (at a character boundary, so a multibyte character is
    never split, nor an underscore doubled) so that it keeps the ``_updated_at`` ending the
    runbook's rollback matches.
    """
    middle = snake(table)
    room = NAME_MAX_BYTES - len(TRIGGER_PREFIX) - len(TRIGGER_SUFFIX)
    middle = middle.encode()[:room].decode("utf-8", "ignore").rstrip("_")
    return f"{TRIGGER_PREFIX}{middle}{TRIGGER_SUFFIX}"


def create_trigger(
    schema: str, table: str, trigger: str, column: str, mode: Mode, *, replace: bool
) -> sql.Composed:
    return CREATE_TRIGGER.format(
        create=_CREATE_OR_REPLACE if replace else _CREATE,
        trigger=sql.Identifier(trigger),
        table=sql.Identifier(schema, table),
        function=sql.Identifier(schema, FUNCTIONS[column]),
        mode=sql.Literal(mode.value),
    )


def drop_trigger(schema: str, table: str, trigger: str) -> sql.Composed:
    return DROP_TRIGGER.format(trigger=sql.Identifier(trigger), table=sql.Identifier(schema, table))


def function_object(schema: str, column: str) -> str:
    """The operation key of a function: ``function public.update_updated_at_camel()``."""
    return f"function {schema}.{FUNCTIONS[column]}()"


def trigger_object(schema: str, table: str, trigger: str) -> str:
    """The operation key of a trigger: ``trigger public.Wallet.trg_wallet_updated_at``."""
    return f"trigger {schema}.{table}.{trigger}"
