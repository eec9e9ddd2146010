"""The server-info probe against the real test server."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import psycopg
import pytest
from psycopg import sql

from pgrunbook.connect import connect
from pgrunbook.dsn import ConnInfo, parse_dsn
from pgrunbook.errors import ConnectError
from pgrunbook.serverinfo import EXTENSIONS, check_connection, pooler_info, probe
from pgrunbook.target import resolve_target
from tests.support import FAST_RETRY, ROLE_PASSWORD, PgServer, scalar

PASSWORD = ROLE_PASSWORD


@pytest.fixture
def plain_role(pg_server: PgServer, login_role: str) -> str:
    """A LOGIN role with no attributes (embedded server only: it relies on its pg_hba.conf)."""
    if pg_server.local is None:
        pytest.skip("logs in as a new role, which depends on the embedded server's pg_hba.conf")
    return login_role


def as_role(db: ConnInfo, role: str) -> ConnInfo:
    return db.with_params(user=role, password=PASSWORD)


def test_version_and_server_state(empty_db: ConnInfo) -> None:
    info = probe(empty_db, retry=FAST_RETRY)
    assert info.version_num == int(str(scalar(empty_db, "SHOW server_version_num")))
    assert info.version == scalar(empty_db, "SHOW server_version")
    assert info.major == info.version_num // 10000
    assert info.major >= 13
    assert info.max_connections == int(str(scalar(empty_db, "SHOW max_connections")))
    assert 1 <= info.connections <= info.max_connections
    assert info.started_at.tzinfo is not None
    assert info.started_at < datetime.now(UTC)
    assert info.in_recovery is False
    assert info.database.name == empty_db.dbname
    assert info.endpoint == empty_db.display()


def test_superuser(pg_server: PgServer, empty_db: ConnInfo) -> None:
    info = probe(empty_db, retry=FAST_RETRY)
    role = info.role
    assert role.current_user == role.session_user == pg_server.admin.user
    assert role.superuser is True
    # a superuser has the privileges of every role
    assert (role.pg_read_all_stats, role.pg_monitor, role.pg_signal_backend) == (True,) * 3
    assert info.database.owner == role.current_user  # it created the database
    assert info.database.owned is True
    assert info.schema.name == "public"
    assert info.schema.exists
    assert (info.schema.usage, info.schema.create) == (True, True)


def test_plain_role(pg_server: PgServer, empty_db: ConnInfo, plain_role: str) -> None:
    info = probe(as_role(empty_db, plain_role), retry=FAST_RETRY)
    role = info.role
    assert role.current_user == plain_role
    flags = (role.superuser, role.createrole, role.createdb, role.replication, role.bypassrls)
    assert flags == (False,) * 5
    assert (role.pg_read_all_stats, role.pg_monitor, role.pg_signal_backend) == (False,) * 3
    assert info.database.owner == pg_server.admin.user
    assert info.database.owned is False
    assert info.schema.usage is True
    # PostgreSQL 15 revoked CREATE on public from PUBLIC
    assert info.schema.create is (pg_server.major < 15)
    # shared_preload_libraries is hidden from roles without pg_read_all_settings
    assert info.extension("pg_stat_statements").preloaded is None


def test_predefined_roles_are_inherited(
    pg_server: PgServer, empty_db: ConnInfo, plain_role: str
) -> None:
    pg_server.execute(sql.SQL("GRANT pg_monitor TO {}").format(sql.Identifier(plain_role)))
    info = probe(as_role(empty_db, plain_role), retry=FAST_RETRY)
    assert info.role.pg_monitor is True
    assert info.role.pg_read_all_stats is True  # pg_monitor includes it
    assert info.role.pg_signal_backend is False
    # pg_monitor includes pg_read_all_settings: the setting is now visible
    assert info.extension("pg_stat_statements").preloaded is (pg_server.local is not None)


def test_schema_from_prisma_param(plain_role: str, pg_server: PgServer, empty_db: ConnInfo) -> None:
    # plain_role comes first so that it outlives the database holding the grant to it
    with connect(empty_db, autocommit=True, retry=FAST_RETRY) as conn:
        conn.execute("CREATE SCHEMA app")
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA app TO {}").format(sql.Identifier(plain_role)))
    info = probe(replace(as_role(empty_db, plain_role), app_params={"schema": "app"}))
    assert info.schema.name == "app"
    assert info.schema.owner == pg_server.admin.user
    assert (info.schema.exists, info.schema.usage, info.schema.create) == (True, True, False)


def test_missing_schema(empty_db: ConnInfo) -> None:
    info = probe(empty_db, schema="no_such_schema", retry=FAST_RETRY)
    assert info.schema.name == "no_such_schema"
    assert info.schema.exists is False
    assert (info.schema.usage, info.schema.create, info.schema.owner) == (False, False, None)


def test_extensions(pg_server: PgServer, empty_db: ConnInfo) -> None:
    info = probe(empty_db, retry=FAST_RETRY)
    assert [ext.name for ext in info.extensions] == list(EXTENSIONS)
    with connect(empty_db, retry=FAST_RETRY) as conn:
        rows = conn.execute("SELECT name FROM pg_available_extensions").fetchall()
    names = {str(row[0]) for row in rows}
    for ext in info.extensions:
        assert ext.available is (ext.name in names)
        assert ext.installed_version is None
        assert ext.needs_preload is EXTENSIONS[ext.name]
        if not ext.needs_preload:
            assert ext.preloaded is None
    if pg_server.local is not None:
        # the embedded server preloads pg_stat_statements (embedded.SERVER_SETTINGS)
        pgss = info.extension("pg_stat_statements")
        assert pgss.available
        assert pgss.preloaded is True
        assert info.extension("pg_cron").preloaded is False


def test_installed_extension(empty_db: ConnInfo) -> None:
    before = probe(empty_db, retry=FAST_RETRY).extension("pgstattuple")
    if not before.available:
        pytest.skip("pgstattuple is not available on this server")
    with connect(empty_db, autocommit=True, retry=FAST_RETRY) as conn:
        conn.execute("CREATE EXTENSION pgstattuple")
    after = probe(empty_db, retry=FAST_RETRY).extension("pgstattuple")
    assert after.installed
    assert after.installed_version == before.default_version
    assert after.installed_schema == "public"


def test_probe_an_open_connection(empty_db: ConnInfo) -> None:
    with connect(empty_db, retry=FAST_RETRY) as conn:
        info = probe(conn)
        # the probe leaves no transaction open behind it
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert info.database.name == empty_db.dbname
        assert info.endpoint.startswith("postgresql://")
        assert info.pooler.pooled is False


def test_pooler_and_neon_come_from_the_dsn(empty_db: ConnInfo) -> None:
    pooled = replace(empty_db, app_params={"pgbouncer": "true"})
    info = probe(pooled, retry=FAST_RETRY)
    assert info.pooler.pooled is True
    assert info.pooler.reason.startswith("detected from the URL: ")
    assert info.neon is False
    neon = pooler_info(parse_dsn("postgresql://u@ep-a-1-pooler.us-east-2.aws.neon.tech/db"))
    assert neon.pooled is True
    assert neon.reason.startswith("detected from the host name: ")
    assert pooler_info(empty_db).reason.startswith("none detected from the host name")


def test_unreadable_catalog(pg_server: PgServer, empty_db: ConnInfo, plain_role: str) -> None:
    """A hardened database where PUBLIC cannot read pg_roles: a ConnectError, not a crash."""
    with connect(empty_db, autocommit=True, retry=FAST_RETRY) as conn:
        conn.execute("REVOKE SELECT ON pg_catalog.pg_roles FROM PUBLIC")
    with pytest.raises(ConnectError) as caught:
        probe(as_role(empty_db, plain_role), retry=FAST_RETRY)
    text = str(caught.value)
    assert "cannot read the server's catalogs" in text
    assert "permission denied" in text
    assert PASSWORD not in text


def test_to_json(empty_db: ConnInfo) -> None:
    document = probe(empty_db, retry=FAST_RETRY).to_json()
    assert set(document) == {
        "endpoint",
        "version",
        "version_num",
        "major",
        "started_at",
        "in_recovery",
        "max_connections",
        "connections",
        "role",
        "database",
        "schema",
        "extensions",
        "pooler",
        "neon",
    }
    assert set(document["extensions"]) == set(EXTENSIONS)
    assert set(document["extensions"]["pg_stat_statements"]) == {
        "installed",
        "available",
        "default_version",
        "installed_version",
        "installed_schema",
        "needs_preload",
        "preloaded",
    }
    assert datetime.fromisoformat(document["started_at"]).tzinfo is not None


def test_check_connection_with_a_generic_pooler(empty_db: ConnInfo) -> None:
    dsn = empty_db.display() + ("&" if "?" in empty_db.display() else "?") + "pgbouncer=true"
    if empty_db.password:
        pytest.skip("the display of the admin DSN has no password to connect with")
    report = check_connection(resolve_target(dsn, environ={}), retry=FAST_RETRY)
    assert report.ddl is None
    assert report.ddl_error is not None
    assert "points at a connection pooler" in report.ddl_error
    assert report.reads == report.app
    assert report.server.pooler.pooled is True
