"""The dry run: per policy, how many rows it would delete, their age range, and the SQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import psycopg
from psycopg import sql

from pgrunbook.cleanup.batches import delete_statement
from pgrunbook.cleanup.policies import ResolvedPolicy

COUNT_SQL: Final = sql.SQL(
    "SELECT count(*), min({column}), max({column}) FROM {table} WHERE {where}"
)


@dataclass(frozen=True)
class DryRun:
    policy: str
    table: str
    rows: int
    oldest: datetime | None
    newest: datetime | None
    sql: str  # one batch's DELETE

    def to_json(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "table": self.table,
            "rows": self.rows,
            "oldest": self.oldest.isoformat() if self.oldest else None,
            "newest": self.newest.isoformat() if self.newest else None,
            "sql": self.sql,
        }


def count_statement(policy: ResolvedPolicy) -> sql.Composed:
    return COUNT_SQL.format(
        column=sql.Identifier(policy.column), table=policy.ident, where=policy.predicate
    )


def dry_run(conn: psycopg.Connection[Any], policy: ResolvedPolicy, batch_size: int) -> DryRun:
    """Count the rows ``policy`` selects now (read-only)."""
    row = conn.execute(count_statement(policy)).fetchone()
    assert row is not None
    return DryRun(
        policy=policy.name,
        table=policy.table.qualified,
        rows=int(row[0]),
        oldest=row[1],
        newest=row[2],
        sql=delete_statement(policy, batch_size).as_string(),
    )
