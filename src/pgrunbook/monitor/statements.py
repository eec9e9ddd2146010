"""``pg_stat_statements`` outliers: the statements with the most total time and those with
the highest mean time (among statements run at least a few times), in this database.

When the extension cannot be read (not installed, not preloaded) the section says why and
how to fix it; that is not an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import errors

from pgrunbook import pgss
from pgrunbook.serverinfo import ServerInfo


@dataclass(frozen=True)
class Statements:
    available: bool
    reason: str | None  # why not available, and the fix
    stats_reset: datetime | None = None
    by_total: tuple[pgss.StatementRow, ...] = ()
    by_mean: tuple[pgss.StatementRow, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "available": self.available,
            "reason": self.reason,
            "stats_reset": self.stats_reset.isoformat() if self.stats_reset else None,
            "by_total": [row.to_json() for row in self.by_total],
            "by_mean": [row.to_json() for row in self.by_mean],
        }


def collect(
    conn: psycopg.Connection[Any],
    server: ServerInfo,
    *,
    limit: int,
    min_calls: int,
    query_chars: int,
) -> Statements:
    reason = pgss.statements_available(server)
    ext = server.extension(pgss.EXTENSION)
    if reason is not None or ext.installed_schema is None:
        return Statements(False, reason or f"{pgss.EXTENSION} is not installed")
    schema, version = ext.installed_schema, ext.installed_version
    try:
        by_total = pgss.top_statements(
            conn, schema, "total", limit, query_chars=query_chars, version=version
        )
        by_mean = pgss.top_statements(
            conn,
            schema,
            "mean",
            limit,
            min_calls=min_calls,
            query_chars=query_chars,
            version=version,
        )
        reset = pgss.stats_reset(conn, schema, version)
    except errors.ObjectNotInPrerequisiteState:
        return Statements(
            False,
            f"{pgss.EXTENSION} is installed but not in shared_preload_libraries: add it "
            "there and restart the server",
        )
    return Statements(True, None, reset, tuple(by_total), tuple(by_mean))
