"""``pg_stat_statements``: the top statements by total and by mean execution time.

Shared by ``discover`` (the ``statements`` check), ``monitor`` (outliers) and ``doctor``
(slow queries). Rows carry raw numbers (calls, milliseconds, rows, blocks); one row per
statement (``queryid``) of a database, summed over the roles that ran it. Only top-level
statements count (statements run inside functions are counted once, in their caller).

The view is server-wide: by default only the current database's statements are read.
Statements of other roles show neither text nor ``queryid`` to a role without the
privileges of ``pg_read_all_stats``; they are left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

import psycopg
from psycopg import sql
from psycopg.rows import class_row

from pgrunbook.serverinfo import ServerInfo

EXTENSION: Final = "pg_stat_statements"
ENABLE_SQL: Final = "CREATE EXTENSION pg_stat_statements;"
DEFAULT_QUERY_CHARS: Final = 200

Order = Literal["total", "mean"]

# {total}: the total-time column (total_exec_time since 1.8, total_time before);
# {toplevel}: a filter on top-level statements (1.9+) or TRUE; {order}: the sort key.
TOP_SQL: Final = sql.SQL(
    """
SELECT s.queryid::int8 AS queryid, d.datname AS database,
       sum(s.calls)::int8 AS calls,
       sum(s.{total})::float8 AS total_ms,
       (sum(s.{total}) / nullif(sum(s.calls), 0))::float8 AS mean_ms,
       sum(s.rows)::int8 AS rows,
       sum(s.shared_blks_hit)::int8 AS shared_blks_hit,
       sum(s.shared_blks_read)::int8 AS shared_blks_read,
       left(regexp_replace((array_agg(s.query ORDER BY s.calls DESC))[1], '\\s+', ' ', 'g'),
            %(chars)s) AS query
  FROM {view} s
  JOIN pg_database d ON d.oid = s.dbid
 WHERE s.queryid IS NOT NULL AND {toplevel}
   AND (%(all_databases)s OR d.datname = current_database())
 GROUP BY s.dbid, d.datname, s.queryid
HAVING sum(s.calls) >= %(min_calls)s
   AND sum(s.{total}) / nullif(sum(s.calls), 0) >= %(min_mean_ms)s
 ORDER BY {order} DESC, s.queryid
 LIMIT %(limit)s
"""
)

VERSION_SQL: Final = "SELECT extversion FROM pg_extension WHERE extname = %(name)s"

# pg_stat_statements_info exists since 1.9 (PostgreSQL 14).
RESET_SQL: Final = sql.SQL("SELECT stats_reset FROM {}")


@dataclass(frozen=True)
class StatementRow:
    queryid: int
    database: str
    calls: int
    total_ms: float
    mean_ms: float
    rows: int
    shared_blks_hit: int
    shared_blks_read: int
    query: str  # whitespace collapsed, truncated

    @property
    def hit_ratio(self) -> float | None:
        """Shared-buffer hits / (hits + reads); None when the statement read no blocks."""
        blocks = self.shared_blks_hit + self.shared_blks_read
        return self.shared_blks_hit / blocks if blocks else None

    def to_json(self) -> dict[str, Any]:
        return {
            "queryid": self.queryid,
            "database": self.database,
            "calls": self.calls,
            "total_ms": self.total_ms,
            "mean_ms": self.mean_ms,
            "rows": self.rows,
            "shared_blks_hit": self.shared_blks_hit,
            "shared_blks_read": self.shared_blks_read,
            "hit_ratio": self.hit_ratio,
            "query": self.query,
        }


def _version(text: str | None) -> tuple[int, ...]:
    if not text:
        return (0,)
    return tuple(int(part) for part in text.split(".") if part.isdigit())


def _installed_version(conn: psycopg.Connection[Any]) -> str | None:
    row = conn.execute(VERSION_SQL, {"name": EXTENSION}).fetchone()
    return str(row[0]) if row else None


def top_statements(
    conn: psycopg.Connection[Any],
    schema_of_extension: str,
    by: Order = "total",
    limit: int = 5,
    *,
    min_calls: int = 1,
    min_mean_ms: float = 0.0,
    query_chars: int = DEFAULT_QUERY_CHARS,
    all_databases: bool = False,
    version: str | None = None,
) -> list[StatementRow]:
    """The ``limit`` statements with the highest total (or mean) time, highest first.

    ``schema_of_extension`` is where ``pg_stat_statements`` is installed
    (``ExtensionInfo.installed_schema``); ``version`` is its installed version (read from
    ``pg_extension`` when not given). ``min_calls`` and ``min_mean_ms`` filter first, so
    ``by="mean", min_mean_ms=500, min_calls=5`` lists the slow statements.

    Raises ``psycopg.errors.ObjectNotInPrerequisiteState`` when the extension is installed
    but the library is not in ``shared_preload_libraries``.
    """
    if by not in ("total", "mean"):
        raise ValueError(f"by must be 'total' or 'mean', not {by!r}")
    found = _version(version or _installed_version(conn))
    query = TOP_SQL.format(
        view=sql.Identifier(schema_of_extension, "pg_stat_statements"),
        total=sql.Identifier("total_exec_time" if found >= (1, 8) else "total_time"),
        toplevel=sql.SQL("s.toplevel" if found >= (1, 9) else "TRUE"),
        order=sql.Identifier("total_ms" if by == "total" else "mean_ms"),
    )
    params = {
        "chars": query_chars,
        "all_databases": all_databases,
        "min_calls": min_calls,
        "min_mean_ms": min_mean_ms,
        "limit": limit,
    }
    return conn.cursor(row_factory=class_row(StatementRow)).execute(query, params).fetchall()


def stats_reset(
    conn: psycopg.Connection[Any], schema_of_extension: str, version: str | None = None
) -> datetime | None:
    """When the statement statistics were last reset (None before extension version 1.9)."""
    if _version(version or _installed_version(conn)) < (1, 9):
        return None
    view = sql.Identifier(schema_of_extension, "pg_stat_statements_info")
    row = conn.execute(RESET_SQL.format(view)).fetchone()
    return row[0] if row else None


def statements_available(server: ServerInfo) -> str | None:
    """None when pg_stat_statements can be read in this database; else why not and the fix.

    The reason is one sentence a user can act on: install the contrib package, add the
    library to ``shared_preload_libraries`` and restart, or ``CREATE EXTENSION``.
    """
    ext = server.extension(EXTENSION)
    if not ext.available:
        return (
            f"{EXTENSION} is not available on this server: install the PostgreSQL contrib "
            f"package (e.g. postgresql-{server.major}-contrib or postgresql-contrib), add "
            f"{EXTENSION} to shared_preload_libraries, restart the server, then run "
            f"{ENABLE_SQL}"
        )
    if ext.installed:
        if ext.preloaded is False:
            return (
                f"{EXTENSION} is installed in this database but not in "
                f"shared_preload_libraries, so it collects nothing: add it there and "
                f"restart the server"
            )
        return None
    if ext.preloaded is True or (ext.preloaded is None and server.neon):
        where = "Neon preloads it" if ext.preloaded is None else "the server preloads it"
        return f"{EXTENSION} is not installed in this database ({where}): run {ENABLE_SQL}"
    if ext.preloaded is False:
        return (
            f"{EXTENSION} is not installed in this database and not in "
            f"shared_preload_libraries: add it there, restart the server, then run "
            f"{ENABLE_SQL}"
        )
    return (
        f"{EXTENSION} is not installed in this database (whether shared_preload_libraries "
        f"loads it is hidden from this role): run {ENABLE_SQL}, and add it to "
        f"shared_preload_libraries (restart) if it is not there yet"
    )
