"""Helpers shared by the tests (fixtures live in conftest.py)."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote

import psycopg
from psycopg import sql

from pgrunbook.catalog import load_catalog
from pgrunbook.cleanup import ResolvedPolicy, resolve_policies
from pgrunbook.connect import RetryPolicy, connect
from pgrunbook.dsn import MASK, ConnInfo
from pgrunbook.embedded import Binaries, LocalServer
from pgrunbook.profile import load_profile
from pgrunbook.reference import Naming
from pgrunbook.seed import SeedReport

TEST_SEED = 42
# The data's clock: now, so retention rules measured against now() count what the seed
# tallied; the determinism test pins its own anchor.
TEST_ANCHOR = datetime.now(UTC).replace(microsecond=0)
FAST_RETRY = RetryPolicy(attempts=1, connect_timeout=5)
ROLE_PASSWORD = "Corr3ct-Horse-Battery"  # the password of the login_role fixture
APP_ROLES = ("app_user", "app_readonly", "app_admin")  # the roles step's roles

# The runbook's section 6 "Rollback Indexes", in its order.
RUNBOOK_INDEXES = [
    "idx_message_room_created_desc",
    "idx_message_sender_created_desc",
    "idx_message_room_active",
    "idx_giftsend_room_created_desc",
    "idx_giftsend_receiver_created_desc",
    "idx_giftsend_sender_created_desc",
    "idx_wallet_tx_wallet_created_desc",
    "idx_wallet_tx_wallet_type_created",
    "idx_roommember_room_active",
    "idx_follow_following_created",
    "idx_follow_follower_created",
    "idx_notification_user_unread",
    "idx_room_public_active",
    "idx_report_pending",
    "idx_refreshtoken_expires_active",
]
# The runbook's constraints the seed breaks: constraint -> (logical table, the seed's anomaly
# that breaks it)
SEEDED_VIOLATIONS = {
    "chk_wallet_balance_non_negative": ("Wallet", "negative_wallet_balances"),
    "chk_wallet_diamonds_non_negative": ("Wallet", "negative_wallet_diamonds"),
    "chk_wallet_tx_amount_nonzero": ("WalletTransaction", "zero_amount_wallet_transactions"),
    "chk_giftsend_not_self": ("GiftSend", "self_gifts"),
    "chk_room_currentmembers_valid": ("Room", "rooms_over_capacity"),
    "chk_follow_not_self": ("Follow", "self_follows"),
    "chk_user_email_format": ("User", "invalid_emails"),
    "chk_user_username_format": ("User", "invalid_usernames"),
}


Query = str | sql.SQL | sql.Composed


@dataclass
class PgServer:
    """A running server the tests may do anything to."""

    admin: ConnInfo  # a superuser on the maintenance database
    major: int
    local: LocalServer | None = None

    def tool(self, name: str) -> str:
        """A client program (pg_dump, psql) as new as the server: the server's own when we
        started it, else the embedded one (the newest, which reads older servers)."""
        binaries = self.local.binaries if self.local is not None else Binaries.embedded()
        return binaries.tool(name)

    def dsn(self, dbname: str, **changes: str) -> ConnInfo:
        return self.admin.with_params(dbname=dbname, **changes)

    def execute(self, query: Query, params: tuple[object, ...] = ()) -> None:
        with connect(self.admin, autocommit=True, retry=FAST_RETRY) as conn:
            conn.execute(_statement(query), params)

    def create_login_role(self, name: str, password: str) -> None:
        self.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(name), sql.Literal(password)
            )
        )

    def drop_role(self, name: str) -> None:
        self.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))

    def create_database(self, name: str, template: str | None = None) -> ConnInfo:
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            query += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        self.execute(query)
        return self.dsn(name)

    def drop_database(self, name: str) -> None:
        self.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


# psql for running exported scripts: Debian's PostgreSQL 15 client (the oldest supported) when
# installed, else the embedded one
PSQL = (
    "/usr/lib/postgresql/15/bin/psql"
    if Path("/usr/lib/postgresql/15/bin/psql").exists()
    else Binaries.embedded().tool("psql")
)


def run_psql(
    info: ConnInfo, path: Path, *variables: str, check: bool = True, quiet: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run a script with the real psql as the exported headers say (``-X -v ON_ERROR_STOP=1``,
    ``variables`` as ``-v name=value``); ``check``: it must succeed (stderr in the message)."""
    args = [PSQL, "-X", *(["-q"] if quiet else []), "-v", "ON_ERROR_STOP=1"]
    for variable in variables:
        args += ["-v", variable]
    env = {**os.environ, "PGPASSWORD": info.password or ""}
    params = {k: v for k, v in info.params.items() if k != "password"}
    done = subprocess.run(
        [*args, "-f", str(path), ConnInfo(params=params).conninfo()],
        capture_output=True, text=True, env=env, check=False, timeout=120,
    )  # fmt: skip
    if check:
        assert done.returncode == 0, done.stderr
    return done


def schema_dump(server: PgServer, info: ConnInfo) -> str:
    """``pg_dump --schema-only`` without pgrunbook's own schema, and without the random key of
    the ``\\restrict`` / ``\\unrestrict`` lines pg_dump 18 adds to every dump."""
    out = subprocess.run(
        [server.tool("pg_dump"), "--schema-only", "--exclude-schema=pgrunbook", "-d",
         info.conninfo()],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    lines = out.splitlines()
    return "\n".join(x for x in lines if not x.startswith(("\\restrict ", "\\unrestrict ")))


def url(info: ConnInfo) -> str:
    """The DSN as a URL with its real password: what a user would pass to --dsn."""
    if info.password is None:
        return info.display()
    return info.display().replace(MASK, quote(info.password, safe=""), 1)


def scalar(info: ConnInfo, query: Query, params: tuple[object, ...] = ()) -> object:
    """Run one query and return the first column of its first row."""
    return rows(info, query, params)[0][0]


def rows(info: ConnInfo, query: Query, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """Run one query and return all its rows."""
    with psycopg.connect(info.conninfo(), autocommit=True) as conn:
        return list(conn.execute(_statement(query), params).fetchall())


def drop_app_roles(server: PgServer, info: ConnInfo) -> None:
    """Remove the cluster-wide roles a test left (their privileges in ``info`` first)."""
    with psycopg.connect(info.conninfo(), autocommit=True) as conn:
        for role in APP_ROLES:
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
    for role in APP_ROLES:
        server.drop_role(role)


def _statement(query: Query) -> sql.SQL | sql.Composed:
    return sql.SQL(query) if isinstance(query, str) else query


@dataclass(frozen=True)
class Template:
    """A template database and the report of the seed that filled it."""

    name: str
    report: SeedReport


class SeededDb(NamedTuple):
    """The ``seeded_db`` fixture: a fresh clone of the seeded reference database in one
    naming, and the manifest of the anomalies its seed injected (``SeedReport.anomalies``)."""

    info: ConnInfo
    naming: Naming
    anomalies: dict[str, Any]


def execute(info: ConnInfo, query: str) -> None:
    """Run statements that return no rows."""
    with psycopg.connect(info.conninfo(), autocommit=True) as conn:
        conn.execute(query.encode())


def leave_failed_reindex_copy(info: ConnInfo) -> None:
    """Make ``event_norm_idx_ccnew``: the invalid copy a failed REINDEX CONCURRENTLY leaves.

    The index expression calls a function that raises when ``test.fail`` is on, so the
    rebuild fails after the copy exists, next to the still valid ``event_norm_idx``.
    """
    execute(
        info,
        "CREATE FUNCTION norm(int) RETURNS int IMMUTABLE LANGUAGE plpgsql AS $$ BEGIN"
        " IF current_setting('test.fail', true) = 'on' THEN RAISE 'boom'; END IF;"
        " RETURN $1; END $$;"
        "CREATE TABLE event (id int PRIMARY KEY, a int);"
        "INSERT INTO event VALUES (1, 1);"
        "CREATE INDEX event_norm_idx ON event (norm(a));",
    )
    with psycopg.connect(info.conninfo(), autocommit=True) as conn:
        conn.execute("SET test.fail = 'on'")
        try:
            conn.execute("REINDEX INDEX CONCURRENTLY event_norm_idx")
        except psycopg.errors.RaiseException:
            return
    raise AssertionError("REINDEX CONCURRENTLY was expected to fail")


def leave_failed_unique_build(info: ConnInfo) -> None:
    """Make ``account_email_key``: the INVALID index a failed CREATE UNIQUE INDEX
    CONCURRENTLY leaves (``account`` holds the email ``a@x.io`` twice, ids 1 and 2)."""
    execute(
        info,
        "CREATE TABLE account (id int PRIMARY KEY, email text);"
        "INSERT INTO account VALUES (1, 'a@x.io'), (2, 'a@x.io'), (3, 'b@x.io');",
    )
    with psycopg.connect(info.conninfo(), autocommit=True) as conn:
        try:
            conn.execute("CREATE UNIQUE INDEX CONCURRENTLY account_email_key ON account (email)")
        except psycopg.errors.UniqueViolation:
            return
    raise AssertionError("the unique build was expected to fail")


def autocommit(info: ConnInfo) -> psycopg.Connection[Any]:
    """A plain autocommit psycopg connection to ``info`` (the test's own session)."""
    return psycopg.connect(info.conninfo(), password=info.password, autocommit=True)


def retention_policies(conn: psycopg.Connection[Any]) -> dict[str, ResolvedPolicy]:
    """The built-in retention policies resolved in schema public, by name (none skipped)."""
    resolved, skipped = resolve_policies(load_catalog(conn, "public"), load_profile().retention)
    assert skipped == []
    return {p.name: p for p in resolved}


def keys_of(conn: psycopg.Connection[Any], policy: ResolvedPolicy, matching: bool) -> set[object]:
    """The primary keys of ``policy``'s table (only the rows it selects when ``matching``)."""
    query = sql.SQL("SELECT {key} FROM {table}").format(
        key=sql.Identifier(policy.key), table=policy.ident
    )
    if matching:
        query = sql.SQL("{} WHERE {}").format(query, policy.predicate)
    return {row[0] for row in conn.execute(query)}
