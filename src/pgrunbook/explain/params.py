"""Parameter values for the critical queries, sampled from the data itself.

A sampled parameter names a grouping column (``Message.roomId``): its rows are counted per
value (only those matching the parameter's ``where``), in one pass over the table. The hot
value is the one with the most rows (the busiest room, the power user), the typical value
the median one; ties go to the smallest value, so the sample is stable. Values are kept as
JSON-friendly Python values (a uuid as its text), so a baseline file can hold them and a
later run can use them again.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any, Final

import psycopg
from psycopg import errors, sql

from pgrunbook.catalog import Catalog
from pgrunbook.locking import timeouts
from pgrunbook.profile.model import ParamSpec
from pgrunbook.resolve import find_column, find_table

STATEMENT_TIMEOUT_MS: Final = 300_000  # one pass over the table, even a large one
LOCK_TIMEOUT_MS: Final = 5_000

SAMPLE_SQL: Final = sql.SQL("""
WITH g AS MATERIALIZED (
  SELECT {column} AS value, count(*) AS n FROM {table}
   WHERE {column} IS NOT NULL AND ({where})
   GROUP BY {column}
)
SELECT (SELECT count(*) FROM g), h.value, h.n, t.value, t.n
  FROM (SELECT value, n FROM g ORDER BY n DESC, value LIMIT 1) AS h,
       (SELECT value, n FROM g ORDER BY n, value
        OFFSET (SELECT (count(*) - 1) / 2 FROM g) LIMIT 1) AS t
""")
TRUE: Final = sql.SQL("true")


@dataclass(frozen=True)
class Sample:
    """The hot and typical values of one grouping column, with their row counts."""

    source: str  # "messages.room_id": the table and column as this database names them
    groups: int  # how many distinct values have rows
    hot: Any
    hot_rows: int
    typical: Any
    typical_rows: int
    where: str = ""  # the condition on the rows counted, as SQL ("is_deleted" = false)

    def value(self, variant: str) -> Any:
        return self.hot if variant == "hot" else self.typical

    def note(self, variant: str) -> str:
        """``hot: the messages.room_id with the most rows (1,234)``, ``typical: the median
        messages.room_id by rows (74; 53 values)``, with `` where ...`` after ``rows``."""
        where = f" where {self.where}" if self.where else ""
        if variant == "hot":
            return f"hot: the {self.source} with the most rows{where} ({self.hot_rows:,})"
        return (
            f"typical: the median {self.source} by rows{where} ({self.typical_rows:,}; "
            f"{self.groups:,} values)"
        )


def plain(value: Any) -> Any:
    """``value`` as JSON keeps it: a uuid, a timestamp or a decimal as text."""
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)  # uuid, Decimal, ...


@dataclass
class Sampler:
    """Samples grouping columns on ``conn``, each (column, where) once."""

    conn: psycopg.Connection[Any]
    catalog: Catalog
    _cache: dict[tuple[str, str], Sample | str] = field(default_factory=dict)

    def sample(self, spec: ParamSpec) -> Sample | str:
        """The hot and typical values for ``spec``, or why there are none."""
        key = (spec.source, spec.where.template if spec.where else "")
        if key not in self._cache:
            self._cache[key] = self._sample(spec)
        return self._cache[key]

    def _sample(self, spec: ParamSpec) -> Sample | str:
        table = find_table(self.catalog, spec.source_table)
        if table is None:
            return f"table {spec.source_table!r} not found in {self.catalog.schema}"
        column = find_column(table, spec.source_column)
        if column is None:
            return f"column {spec.source_column!r} not found in {table.qualified}"
        where: sql.Composable = TRUE
        condition = ""
        if spec.where is not None:
            rendered = spec.where.render(table)
            if isinstance(rendered, str):
                return rendered
            where, condition = rendered, rendered.as_string(self.conn)
        query = SAMPLE_SQL.format(
            column=sql.Identifier(column.name),
            table=sql.Identifier(table.schema, table.name),
            where=where,
        )
        try:
            with timeouts(self.conn, lock_timeout_ms=LOCK_TIMEOUT_MS,
                          statement_timeout_ms=STATEMENT_TIMEOUT_MS):  # fmt: skip
                row = self.conn.execute(query).fetchone()
        except (errors.LockNotAvailable, errors.QueryCanceled) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            return f"cannot sample {table.name}.{column.name} ({first}): pass --param"
        source = f"{table.name}.{column.name}"
        if row is None:
            where_text = f" where {spec.where.template}" if spec.where else ""
            return f"no rows in {table.qualified}{where_text} to sample {source} from"
        groups, hot, hot_rows, typical, typical_rows = row
        return Sample(source, int(groups), plain(hot), int(hot_rows), plain(typical),
                      int(typical_rows), condition)  # fmt: skip
