"""The dry run: per policy, how many rows it would delete, their age range, and the SQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import psycopg
from psycopg import sql

from pgrunbook.cleanup.batches import CLEANUP_LOCKS, BatchOrder, delete_statement
from pgrunbook.cleanup.blockranges import BlockRanges, range_statement
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
    sql: str  # the first batch's DELETE

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


def first_batch(
    conn: psycopg.Connection[Any], policy: ResolvedPolicy, batch_size: int, by: BatchOrder
) -> sql.Composed:
    """The DELETE of the first batch ``run_cleanup`` would run (``by`` as it would)."""
    if by == "blocks" and policy.table.kind == "r":
        blocks = BlockRanges(conn, policy, batch_size, CLEANUP_LOCKS).blocks_per_batch
        return range_statement(policy, 0, blocks)
    return delete_statement(policy, batch_size)


def dry_run(
    conn: psycopg.Connection[Any],
    policy: ResolvedPolicy,
    batch_size: int,
    by: BatchOrder = "blocks",
) -> DryRun:
    """Count the rows ``policy`` selects now (read-only)."""
    row = conn.execute(count_statement(policy)).fetchone()
    assert row is not None
    return DryRun(
        policy=policy.name,
        table=policy.table.qualified,
        rows=int(row[0]),
        oldest=row[1],
        newest=row[2],
        sql=first_batch(conn, policy, batch_size, by).as_string(),
    )
