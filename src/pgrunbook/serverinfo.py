"""What the server is and what we may do there: version, role, database, schema, extensions.

``probe`` answers the questions every later command asks before it acts (is
``pg_stat_statements`` there, may this role create in the schema, is this a pooler) with
catalog queries any role may run, so it works with the weakest credentials too.
``check_connection`` adds which endpoint serves reads and which serves DDL, for
``pgrunbook doctor connection``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Any, Final

import psycopg
from psycopg.rows import class_row

from pgrunbook.connect import DEFAULT_RETRY, RetryPolicy, connect
from pgrunbook.dsn import ConnInfo, scrub
from pgrunbook.errors import ConfigError, ConnectError
from pgrunbook.target import Target

# The extensions the runbook uses, and whether each must be in shared_preload_libraries.
EXTENSIONS: Final[dict[str, bool]] = {
    "pg_stat_statements": True,
    "hypopg": False,
    "pg_cron": True,
    "pgstattuple": False,
}
# Predefined roles that widen what monitoring and cleanup may see or do.
PREDEFINED_ROLES: Final = ("pg_read_all_stats", "pg_monitor", "pg_signal_backend")

SERVER_SQL: Final = """
SELECT current_setting('server_version') AS version,
       current_setting('server_version_num')::int AS version_num,
       pg_postmaster_start_time() AS started_at,
       pg_is_in_recovery() AS in_recovery,
       current_setting('max_connections')::int AS max_connections,
       (SELECT count(*) FROM pg_stat_activity
         WHERE backend_type = 'client backend')::int AS connections
"""

ROLE_SQL: Final = """
SELECT current_user::text AS current_user, session_user::text AS session_user,
       r.rolsuper AS superuser, r.rolcreaterole AS createrole, r.rolcreatedb AS createdb,
       r.rolreplication AS replication, r.rolbypassrls AS bypassrls
  FROM pg_roles r
 WHERE r.rolname = current_user
"""

# "Has the privileges of" (pg_has_role ... 'USAGE'), which is what the server checks; only
# roles that exist on this server are returned, so an old server cannot make it fail.
PREDEFINED_ROLES_SQL: Final = """
SELECT p.rolname AS name, pg_has_role(current_user, p.oid, 'USAGE') AS granted
  FROM pg_roles p
 WHERE p.rolname = ANY(%(names)s)
"""

DATABASE_SQL: Final = """
SELECT d.datname AS name, pg_get_userbyid(d.datdba) AS owner,
       d.datdba = (SELECT oid FROM pg_roles WHERE rolname = current_user) AS owned
  FROM pg_database d
 WHERE d.datname = current_database()
"""

SCHEMA_SQL: Final = """
SELECT n.nspname AS name, pg_get_userbyid(n.nspowner) AS owner,
       has_schema_privilege(n.oid, 'USAGE') AS usage,
       has_schema_privilege(n.oid, 'CREATE') AS create,
       true AS exists
  FROM pg_namespace n
 WHERE n.nspname = %(schema)s
"""

EXTENSIONS_SQL: Final = """
SELECT wanted.name,
       a.name IS NOT NULL AS available,
       a.default_version,
       e.extversion AS installed_version,
       n.nspname AS installed_schema
  FROM unnest(%(names)s::text[]) WITH ORDINALITY AS wanted(name, position)
  LEFT JOIN pg_available_extensions a ON a.name = wanted.name
  LEFT JOIN pg_extension e ON e.extname = wanted.name
  LEFT JOIN pg_namespace n ON n.oid = e.extnamespace
 ORDER BY wanted.position
"""

# pg_settings hides shared_preload_libraries from roles without pg_read_all_settings, where
# current_setting() would raise instead: no row means "cannot tell".
PRELOAD_SQL: Final = """
SELECT setting FROM pg_settings WHERE name = 'shared_preload_libraries'
"""


@dataclass(frozen=True)
class _ServerRow:
    version: str
    version_num: int
    started_at: datetime
    in_recovery: bool
    max_connections: int
    connections: int


@dataclass(frozen=True)
class _GrantRow:
    name: str
    granted: bool


@dataclass(frozen=True)
class _SettingRow:
    setting: str


@dataclass(frozen=True)
class RoleInfo:
    """The role we act as, its attributes and the predefined roles whose privileges it has."""

    current_user: str
    session_user: str
    superuser: bool
    createrole: bool
    createdb: bool
    replication: bool
    bypassrls: bool
    pg_read_all_stats: bool = False
    pg_monitor: bool = False
    pg_signal_backend: bool = False


@dataclass(frozen=True)
class DatabaseInfo:
    name: str
    owner: str
    owned: bool  # the current user is the owner (not merely a member of the owning role)


@dataclass(frozen=True)
class SchemaInfo:
    name: str
    exists: bool
    owner: str | None = None
    usage: bool = False
    create: bool = False


@dataclass(frozen=True)
class ExtensionInfo:
    name: str
    available: bool
    default_version: str | None
    installed_version: str | None
    installed_schema: str | None
    needs_preload: bool = False
    # In shared_preload_libraries? None when not needed, or hidden from this role.
    preloaded: bool | None = None

    @property
    def installed(self) -> bool:
        return self.installed_version is not None


@dataclass(frozen=True)
class PoolerInfo:
    pooled: bool
    reason: str


@dataclass(frozen=True)
class ServerInfo:
    """One probe of a server, as seen through one connection."""

    endpoint: str  # the DSN, password masked
    version: str
    version_num: int
    started_at: datetime
    in_recovery: bool
    max_connections: int
    connections: int
    role: RoleInfo
    database: DatabaseInfo
    schema: SchemaInfo
    extensions: tuple[ExtensionInfo, ...]
    pooler: PoolerInfo
    neon: bool

    @property
    def major(self) -> int:
        return self.version_num // 10000

    def extension(self, name: str) -> ExtensionInfo:
        for ext in self.extensions:
            if ext.name == name:
                return ext
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        extensions = {}
        for ext in self.extensions:
            entry = asdict(ext)
            del entry["name"]
            extensions[ext.name] = {"installed": ext.installed, **entry}
        return {
            "endpoint": self.endpoint,
            "version": self.version,
            "version_num": self.version_num,
            "major": self.major,
            "started_at": self.started_at.isoformat(),
            "in_recovery": self.in_recovery,
            "max_connections": self.max_connections,
            "connections": self.connections,
            "role": asdict(self.role),
            "database": asdict(self.database),
            "schema": asdict(self.schema),
            "extensions": extensions,
            "pooler": asdict(self.pooler),
            "neon": self.neon,
        }


def pooler_info(info: ConnInfo) -> PoolerInfo:
    """Whether ``info`` goes through a pooler, judged from the DSN alone.

    PgBouncer answers ``SHOW POOLS`` and the like only on its admin console; through a pooled
    session the server looks like any other, so the host name and URL are all we have.
    """
    if info.pooler_reason is None:
        return PoolerInfo(
            False, "none detected from the host name or the URL (a pooler is invisible in SQL)"
        )
    where = "the host name" if "-pooler." in info.host else "the URL"
    return PoolerInfo(True, f"detected from {where}: {info.pooler_reason}")


def _preloaded(setting: str | None, name: str, needed: bool) -> bool | None:
    if not needed or setting is None:
        return None
    # entries may be quoted or carry a path: "pg_stat_statements", $libdir/pg_cron
    return name in {lib.strip().strip('"').rsplit("/", 1)[-1] for lib in setting.split(",")}


def _probe(conn: psycopg.Connection[Any], info: ConnInfo, schema: str) -> ServerInfo:
    with conn.transaction():
        server = conn.cursor(row_factory=class_row(_ServerRow)).execute(SERVER_SQL).fetchone()
        role = conn.cursor(row_factory=class_row(RoleInfo)).execute(ROLE_SQL).fetchone()
        grants = {
            row.name: row.granted
            for row in conn.cursor(row_factory=class_row(_GrantRow))
            .execute(PREDEFINED_ROLES_SQL, {"names": list(PREDEFINED_ROLES)})
            .fetchall()
        }
        database = conn.cursor(row_factory=class_row(DatabaseInfo)).execute(DATABASE_SQL).fetchone()
        found = (
            conn.cursor(row_factory=class_row(SchemaInfo))
            .execute(SCHEMA_SQL, {"schema": schema})
            .fetchone()
        )
        preload = conn.cursor(row_factory=class_row(_SettingRow)).execute(PRELOAD_SQL).fetchone()
        setting = preload.setting if preload else None
        extensions = tuple(
            replace(
                row,
                needs_preload=EXTENSIONS[row.name],
                preloaded=_preloaded(setting, row.name, EXTENSIONS[row.name]),
            )
            for row in conn.cursor(row_factory=class_row(ExtensionInfo))
            .execute(EXTENSIONS_SQL, {"names": list(EXTENSIONS)})
            .fetchall()
        )
    assert server is not None and role is not None and database is not None
    role = replace(
        role,
        pg_read_all_stats=grants.get("pg_read_all_stats", False),
        pg_monitor=grants.get("pg_monitor", False),
        pg_signal_backend=grants.get("pg_signal_backend", False),
    )
    return ServerInfo(
        endpoint=info.display(),
        version=server.version,
        version_num=server.version_num,
        started_at=server.started_at,
        in_recovery=server.in_recovery,
        max_connections=server.max_connections,
        connections=server.connections,
        role=role,
        database=database,
        schema=found or SchemaInfo(name=schema, exists=False),
        extensions=extensions,
        pooler=pooler_info(info),
        neon=info.is_neon,
    )


def probe(
    target: psycopg.Connection[Any] | ConnInfo,
    *,
    info: ConnInfo | None = None,
    schema: str | None = None,
    retry: RetryPolicy = DEFAULT_RETRY,
) -> ServerInfo:
    """Probe the server behind a connection (or connect to ``target`` and probe it).

    ``info`` names the endpoint of a given connection (its host decides the pooler and Neon
    answers); ``schema`` defaults to the DSN's Prisma ``?schema=``, else ``public``.
    Raises ConnectError when the connection fails or the catalogs cannot be read.
    """
    if isinstance(target, ConnInfo):
        info = target
        with connect(target, autocommit=True, retry=retry) as conn:
            return probe(conn, info=info, schema=schema)
    if info is None:
        info = ConnInfo(params=target.info.get_parameters(), source="the connection")
    try:
        return _probe(target, info, schema or info.schema)
    except (psycopg.OperationalError, psycopg.errors.InsufficientPrivilege) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConnectError(
            f"cannot read the server's catalogs through {info.display()}: "
            f"{scrub(first, info.password)}",
            "check the connection and the role's privileges",
        ) from None


@dataclass(frozen=True)
class ConnectionReport:
    """``doctor connection``: which endpoint serves what, and the server behind the reads."""

    app: ConnInfo
    reads: ConnInfo
    ddl: ConnInfo | None
    ddl_error: str | None
    notes: tuple[str, ...]
    server: ServerInfo

    def to_json(self) -> dict[str, Any]:
        def endpoint(info: ConnInfo) -> dict[str, Any]:
            return {"dsn": info.display(), "source": info.source}

        return {
            "reachable": True,
            "endpoints": {
                "app": {
                    **endpoint(self.app),
                    "pooled": self.app.pooled,
                    "pooler_reason": pooler_info(self.app).reason,
                },
                "reads": endpoint(self.reads),
                "ddl": endpoint(self.ddl) if self.ddl else None,
            },
            "ddl_error": self.ddl_error,
            "notes": list(self.notes),
            "server": self.server.to_json(),
        }


def check_connection(target: Target, *, retry: RetryPolicy = DEFAULT_RETRY) -> ConnectionReport:
    """Connect to the read endpoint and probe it; say which endpoint DDL would use."""
    try:
        ddl: ConnInfo | None = target.session("DDL")
        ddl_error = None
    except ConfigError as exc:
        ddl, ddl_error = None, exc.one_line()
    reads = target.reader()
    server = probe(reads, retry=retry)
    return ConnectionReport(
        app=target.app,
        reads=reads,
        ddl=ddl,
        ddl_error=ddl_error,
        notes=target.notes,
        server=server,
    )
