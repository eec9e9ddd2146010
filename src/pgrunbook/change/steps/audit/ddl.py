"""The statements of script 04, built once for ``plan`` (operations) and ``export`` (psql).

Everything is composed with ``psycopg.sql``: the audit table's and the audited tables'
names come from this database. The functions pin ``search_path`` to ``pg_catalog,
pg_temp`` and name every table schema-qualified, so what they write cannot be redirected
by a caller's search_path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from psycopg import sql

from pgrunbook.change.steps.audit.target import COLUMNS, MAX_IDENTIFIER, AuditTarget
from pgrunbook.resolve import snake

SEARCH_PATH: Final = "pg_catalog, pg_temp"
# how pg_proc.proconfig records the SET clause
SEARCH_PATH_CONFIG: Final = "search_path=pg_catalog, pg_temp"


# --- the table -------------------------------------------------------------------------

CREATE_TABLE_SQL: Final = sql.SQL("CREATE TABLE {if_not_exists}{table} (\n    {columns}\n)")
DROP_TABLE_SQL: Final = sql.SQL("DROP TABLE IF EXISTS {table}{cascade}")


def create_table(target: AuditTarget, *, if_not_exists: bool) -> sql.Composed:
    columns = sql.SQL(",\n    ").join(
        sql.SQL("{} {}").format(target.column(c.logical), sql.SQL(c.ddl)) for c in COLUMNS
    )
    return CREATE_TABLE_SQL.format(
        if_not_exists=sql.SQL("IF NOT EXISTS " if if_not_exists else ""),
        table=target.identifier,
        columns=columns,
    )


def drop_table(target: AuditTarget, *, cascade: bool) -> sql.Composed:
    return DROP_TABLE_SQL.format(
        table=target.identifier, cascade=sql.SQL(" CASCADE" if cascade else "")
    )


# --- its indexes -----------------------------------------------------------------------


@dataclass(frozen=True)
class AuditIndex:
    """An index for one way the audit log is read."""

    suffix: str  # idx_<table>_<suffix>
    columns: tuple[tuple[str, bool], ...]  # (logical column, descending)
    serves: str


INDEXES: Final[tuple[AuditIndex, ...]] = (
    AuditIndex(
        "entity_created",
        (("entityType", False), ("entityId", False), ("createdAt", True)),
        "the history of one object, newest first: WHERE entityType = $1 AND entityId = $2 "
        "ORDER BY createdAt DESC",
    ),
    AuditIndex(
        "user_created",
        (("userId", False), ("createdAt", True)),
        "what one user did, newest first: WHERE userId = $1 ORDER BY createdAt DESC",
    ),
    AuditIndex(
        "created",
        (("createdAt", True),),
        "the latest activity (ORDER BY createdAt DESC LIMIT n) and retention "
        "(WHERE createdAt < now() - interval ...)",
    ),
)

CREATE_INDEX_SQL: Final = sql.SQL(
    "CREATE INDEX {concurrently}IF NOT EXISTS {name} ON {table} ({columns})"
)
DROP_INDEX_SQL: Final = sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}")


def create_index(target: AuditTarget, index: AuditIndex, *, concurrently: bool) -> sql.Composed:
    columns = sql.SQL(", ").join(
        target.column(logical) + sql.SQL(" DESC" if desc else "") for logical, desc in index.columns
    )
    return CREATE_INDEX_SQL.format(
        concurrently=sql.SQL("CONCURRENTLY " if concurrently else ""),
        name=sql.Identifier(target.index_name(index.suffix)),
        table=target.identifier,
        columns=columns,
    )


def drop_index(target: AuditTarget, index: AuditIndex) -> sql.Composed:
    return DROP_INDEX_SQL.format(sql.Identifier(target.schema, target.index_name(index.suffix)))


# --- functions -------------------------------------------------------------------------


@dataclass(frozen=True)
class FunctionDef:
    """A plpgsql function as pgrunbook writes it, and what pg_proc records of it."""

    schema: str
    name: str
    signature: sql.SQL  # the argument types, as DROP FUNCTION names them
    parameters: sql.SQL  # names, types and defaults, as CREATE FUNCTION declares them
    arg_names: tuple[str, ...]
    defaults: int  # how many parameters have a default
    returns: str  # as regtype renders it
    body: sql.Composed  # what goes between the dollar quotes

    @property
    def source(self) -> str:
        """The body as pg_proc.prosrc records it."""
        return self.body.as_string()

    @property
    def identifier(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def regprocedure(self) -> str:
        """``"public".audit_log(UUID, ...)``: what to_regprocedure() looks up."""
        return (self.identifier + sql.SQL("(") + self.signature + sql.SQL(")")).as_string()

    def create(self) -> sql.Composed:
        tag = sql.SQL(_dollar_tag(self.source))
        return CREATE_FUNCTION_SQL.format(
            function=self.identifier,
            parameters=self.parameters,
            returns=sql.SQL(self.returns),
            search_path=sql.SQL(SEARCH_PATH),
            body=tag + self.body + tag,
        )

    def drop(self) -> sql.Composed:
        return DROP_FUNCTION_SQL.format(function=self.identifier, signature=self.signature)


CREATE_FUNCTION_SQL: Final = sql.SQL(
    "CREATE OR REPLACE FUNCTION {function}({parameters})\n"
    "RETURNS {returns}\nLANGUAGE plpgsql\nSET search_path = {search_path}\nAS {body}"
)
DROP_FUNCTION_SQL: Final = sql.SQL("DROP FUNCTION IF EXISTS {function}({signature})")


def _dollar_tag(body: str) -> str:
    """A dollar-quote tag that does not occur in ``body`` (an identifier may hold ``$``)."""
    tag, n = "$audit$", 0
    while tag in body:
        n += 1
        tag = f"$audit{n}$"
    return tag


# The runbook's rollback drops exactly this signature.
AUDIT_LOG: Final = "audit_log"
AUDIT_LOG_SIGNATURE: Final = sql.SQL(
    "UUID, VARCHAR, VARCHAR, VARCHAR, JSONB, JSONB, JSONB, VARCHAR, TEXT"
)
AUDIT_LOG_PARAMETERS: Final = sql.SQL(
    "\n    p_user_id UUID,\n    p_action VARCHAR,\n    p_entity_type VARCHAR,"
    "\n    p_entity_id VARCHAR DEFAULT NULL,\n    p_old_values JSONB DEFAULT NULL,"
    "\n    p_new_values JSONB DEFAULT NULL,\n    p_metadata JSONB DEFAULT NULL,"
    "\n    p_ip_address VARCHAR DEFAULT NULL,\n    p_user_agent TEXT DEFAULT NULL\n"
)
AUDIT_LOG_ARG_NAMES: Final = ("p_user_id", "p_action", "p_entity_type", "p_entity_id",
                              "p_old_values", "p_new_values", "p_metadata", "p_ip_address",
                              "p_user_agent")  # fmt: skip
AUDIT_LOG_BODY: Final = sql.SQL("""
DECLARE
    v_id uuid := gen_random_uuid();
BEGIN
    INSERT INTO {table} ({id}, {user_id}, {action}, {entity_type}, {entity_id},
                {old_values}, {new_values}, {metadata}, {ip_address}, {user_agent})
    VALUES (v_id, p_user_id, p_action, p_entity_type, p_entity_id,
            p_old_values, p_new_values, p_metadata, p_ip_address, p_user_agent);
    RETURN v_id;
END
""")


def _columns(target: AuditTarget) -> dict[str, sql.Composable]:
    return {snake(c.logical): target.column(c.logical) for c in COLUMNS}


def audit_log(target: AuditTarget) -> FunctionDef:
    """``audit_log(...) RETURNS uuid``: writes one audit row and returns its id."""
    body = AUDIT_LOG_BODY.format(table=target.identifier, **_columns(target))
    return FunctionDef(
        schema=target.schema,
        name=AUDIT_LOG,
        signature=AUDIT_LOG_SIGNATURE,
        parameters=AUDIT_LOG_PARAMETERS,
        arg_names=AUDIT_LOG_ARG_NAMES,
        defaults=6,
        returns="uuid",
        body=body,
    )


# --- the row-change trigger ------------------------------------------------------------

ROW_CHANGE: Final = "audit_row_change"
# the setting an app may SET LOCAL to say who made the change
USER_SETTING: Final = "pgrunbook.user_id"
UUID_PATTERN: Final = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
ROW_CHANGE_BODY: Final = sql.SQL("""
DECLARE
    v_old jsonb;
    v_new jsonb;
    v_user text := nullif(current_setting({setting}, true), '');
    v_user_id uuid;
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        v_old := to_jsonb(OLD);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        v_new := to_jsonb(NEW);
    END IF;
    -- a setting that is not a uuid must not fail the app's write: keep it as text
    IF v_user ~* {pattern} THEN
        v_user_id := v_user::uuid;
        v_user := NULL;
    END IF;
    INSERT INTO {table} ({id}, {user_id}, {action}, {entity_type}, {entity_id},
                {old_values}, {new_values}, {metadata})
    VALUES (gen_random_uuid(), v_user_id, TG_OP, TG_TABLE_NAME,
            left(coalesce(v_new, v_old) ->> 'id', 255), v_old, v_new,
            jsonb_strip_nulls(jsonb_build_object('txid', txid_current(),
                                                 'schema', TG_TABLE_SCHEMA,
                                                 'user_id_setting', v_user)));
    RETURN NULL;
END
""")


def row_change(target: AuditTarget) -> FunctionDef:
    """``audit_row_change()``: the AFTER ROW trigger function that records old and new rows."""
    body = ROW_CHANGE_BODY.format(
        table=target.identifier,
        setting=sql.Literal(USER_SETTING),
        pattern=sql.Literal(UUID_PATTERN),
        **_columns(target),
    )
    return FunctionDef(
        schema=target.schema,
        name=ROW_CHANGE,
        signature=sql.SQL(""),
        parameters=sql.SQL(""),
        arg_names=(),
        defaults=0,
        returns="trigger",
        body=body,
    )


TRIGGER_SQL: Final = sql.SQL(
    "CREATE {or_replace}TRIGGER {name}\n"
    "AFTER INSERT OR UPDATE OR DELETE ON {table}\n"
    "FOR EACH ROW EXECUTE FUNCTION {function}()"
)
DROP_TRIGGER_SQL: Final = sql.SQL("DROP TRIGGER IF EXISTS {name} ON {table}")
TRIGGER_SUFFIX: Final = "_audit"


def trigger_name(table: str) -> str:
    """``trg_wallet_transaction_audit`` for ``WalletTransaction``, at most 63 bytes (a long
    table name is cut at a character boundary; the ``_audit`` ending stays)."""
    return _fit(f"trg_{snake(table)}", TRIGGER_SUFFIX)


def _fit(stem: str, suffix: str) -> str:
    room = MAX_IDENTIFIER - len(suffix.encode())
    return stem.encode()[:room].decode("utf-8", "ignore") + suffix


def create_trigger(schema: str, table: str, *, or_replace: bool) -> sql.Composed:
    return TRIGGER_SQL.format(
        or_replace=sql.SQL("OR REPLACE " if or_replace else ""),
        name=sql.Identifier(trigger_name(table)),
        table=sql.Identifier(schema, table),
        function=sql.Identifier(schema, ROW_CHANGE),
    )


def drop_trigger(schema: str, table: str) -> sql.Composed:
    return DROP_TRIGGER_SQL.format(
        name=sql.Identifier(trigger_name(table)), table=sql.Identifier(schema, table)
    )
