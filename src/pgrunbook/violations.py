"""Counting the rows of a table that match a condition, at a bounded cost.

Orphan rows, rows that break a CHECK constraint, rows a retention policy would delete: each
is "the rows of this table where ...". ``count_violations`` counts them with up to five
sample keys and the SELECT that lists them all. The count runs in its own transaction under
a statement timeout, and a table larger than a size threshold is counted on a
``TABLESAMPLE SYSTEM`` sample scaled up (the result says so). A count that times out is a
result (``timed_out``), not an exception.

The condition refers to the table's columns unqualified or through ``column(name)`` (the
table is aliased ``t``). It is composed with ``psycopg.sql`` and may embed literals
(``sql.Literal``); the queries run without parameters, so a ``%`` inside a literal (an
email pattern) is safe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import psycopg
from psycopg import errors, sql

from pgrunbook.catalog import Table
from pgrunbook.locking import timeouts

ALIAS: Final = "t"  # the counted table's alias in every query built here
LOCK_TIMEOUT_MS: Final = 1000  # a SELECT waits no longer than this behind DDL

FROM_SQL: Final = sql.SQL("{table} AS {alias}")
KEY_TEXT_SQL: Final = sql.SQL("{key}::text")
ROW_TEXT_SQL: Final = sql.SQL("ROW({keys})::text")  # a composite key, as "(a,b)"
CTID_SQL: Final = sql.SQL("{alias}.ctid")  # the row's address, for a table without a key
COUNT_SQL: Final = sql.SQL("SELECT count(*) FROM {source} WHERE {predicate}")
SAMPLES_SQL: Final = sql.SQL("SELECT {key} FROM {source} WHERE {predicate} LIMIT {limit}")
LISTING_SQL: Final = sql.SQL("SELECT * FROM {source} WHERE {predicate} ORDER BY {order}")
# REPEATABLE: the count and the sample keys read the same pages, and a rerun the same estimate.
SAMPLED_SOURCE_SQL: Final = sql.SQL("{source} TABLESAMPLE SYSTEM ({percent}) REPEATABLE (0)")


@dataclass(frozen=True)
class CountLimits:
    """How much a count may cost."""

    statement_timeout_ms: int = 10_000
    sample_above_bytes: int = 256 * 1024 * 1024  # larger tables are counted on a sample
    sample_percent: float = 1.0  # 0 or 100: never sample
    max_samples: int = 5


@dataclass(frozen=True)
class Violations:
    """How many rows match, a few of their keys, and the query that lists them all."""

    count: int | None  # None when the count did not finish in time
    sampled: bool  # the count is an estimate scaled up from a sample
    sample_percent: float | None
    samples: tuple[str, ...]  # primary-key values as text (a row literal for composite keys)
    query: str  # SELECT listing every matching row (whole table, never sampled)
    timed_out: bool = False
    timeout_ms: int = 0

    @property
    def found(self) -> bool:
        return self.count is not None and self.count > 0

    def describe(self, noun: str = "rows") -> str:
        """``7 rows``, ``about 1,200 rows (estimated from a 1% sample)`` or why none."""
        if self.count is None:
            return f"could not count the {noun} within {self.timeout_ms / 1000:g} s"
        if self.sampled:
            return f"about {self.count:,} {noun} (estimated from a {self.sample_percent:g}% sample)"
        if self.count == 1 and noun.endswith("s"):
            noun = noun[:-1]  # "1 row"
        return f"{self.count:,} {noun}"

    def to_json(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "samples": list(self.samples),
            "query": self.query,
            "sampled": self.sampled,
            "sample_percent": self.sample_percent,
            "timed_out": self.timed_out,
        }


def column(name: str) -> sql.Identifier:
    """``t."name"``: a column of the counted table, unambiguous inside subqueries."""
    return sql.Identifier(ALIAS, name)


def source(table: Table) -> sql.Composed:
    """``"schema"."table" AS t``, the FROM item every query here uses."""
    return FROM_SQL.format(
        table=sql.Identifier(table.schema, table.name), alias=sql.Identifier(ALIAS)
    )


def _key_columns(table: Table) -> list[sql.Composable]:
    pk = table.primary_key
    names = table.column_names(pk.columns) if pk else []
    return [column(n) for n in names] or [CTID_SQL.format(alias=sql.Identifier(ALIAS))]


def _key_text(keys: list[sql.Composable]) -> sql.Composed:
    if len(keys) == 1:
        return KEY_TEXT_SQL.format(key=keys[0])
    return ROW_TEXT_SQL.format(keys=sql.SQL(", ").join(keys))


def listing_query(table: Table, predicate: sql.Composable) -> sql.Composed:
    """SELECT every row of ``table`` matching ``predicate``, in key order."""
    return LISTING_SQL.format(
        source=source(table), predicate=predicate, order=sql.SQL(", ").join(_key_columns(table))
    )


def _fetch(
    conn: psycopg.Connection[Any], query: sql.Composed, timeout_ms: int
) -> list[tuple[Any, ...]] | None:
    """The rows of ``query`` run under the timeout, or None when it did not finish."""
    try:
        with (
            conn.transaction(),
            timeouts(conn, lock_timeout_ms=LOCK_TIMEOUT_MS, statement_timeout_ms=timeout_ms),
        ):
            return list(conn.execute(query).fetchall())
    except (errors.QueryCanceled, errors.LockNotAvailable):
        return None


def count_violations(
    conn: psycopg.Connection[Any],
    table: Table,
    predicate: sql.Composable,
    limits: CountLimits = CountLimits(),
) -> Violations:
    """Count the rows of ``table`` where ``predicate`` is true, within ``limits``.

    ``conn`` should be in autocommit mode: each query runs in its own short transaction.
    A row where the predicate is NULL does not match (``NOT (check)`` lets NULL pass, as a
    CHECK constraint does).
    """
    whole = source(table)
    sampled = 0 < limits.sample_percent < 100 and table.table_bytes > limits.sample_above_bytes
    counted = (
        SAMPLED_SOURCE_SQL.format(source=whole, percent=sql.Literal(limits.sample_percent))
        if sampled
        else whole
    )
    listing = listing_query(table, predicate).as_string(conn)
    rows = _fetch(
        conn, COUNT_SQL.format(source=counted, predicate=predicate), limits.statement_timeout_ms
    )
    if rows is None:
        return Violations(
            count=None,
            sampled=sampled,
            sample_percent=limits.sample_percent if sampled else None,
            samples=(),
            query=listing,
            timed_out=True,
            timeout_ms=limits.statement_timeout_ms,
        )
    matched = int(rows[0][0])
    count = round(matched * 100 / limits.sample_percent) if sampled else matched
    samples: tuple[str, ...] = ()
    if matched and limits.max_samples > 0:
        found = _fetch(
            conn,
            SAMPLES_SQL.format(
                key=_key_text(_key_columns(table)),
                source=counted,
                predicate=predicate,
                limit=sql.Literal(limits.max_samples),
            ),
            limits.statement_timeout_ms,
        )
        samples = tuple(str(r[0]) for r in found or [])
    return Violations(
        count=count,
        sampled=sampled,
        sample_percent=limits.sample_percent if sampled else None,
        samples=samples,
        query=listing,
        timeout_ms=limits.statement_timeout_ms,
    )
