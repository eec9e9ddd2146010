"""A profile: the app-specific objects of the runbook, as data.

The built-in profile (``ali.toml``) holds the Ali backend's constraints and retention
policies; later steps add their own entries. Everything generic works without one.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from psycopg import sql

from pgrunbook.catalog import Catalog, Table
from pgrunbook.resolve import find_column, find_table

CADENCES: Final = ("daily", "weekly", "monthly", "quarterly")


@dataclass(frozen=True)
class Predicate:
    """A SQL template over logical column names, e.g. ``{balance} >= 0``."""

    template: str
    values: Mapping[str, Any] = field(default_factory=dict)

    def names(self) -> list[str]:
        """The placeholders, in order (an empty ``{}`` shows as ``""``: the loader refuses it)."""
        return [f for _, f, _, _ in string.Formatter().parse(self.template) if f is not None]

    def columns(self) -> list[str]:
        return [n for n in self.names() if n not in self.values]

    def render(self, table: Table) -> sql.Composed | str:
        """The predicate for ``table``'s real column names, or why it cannot be rendered."""
        args: dict[str, sql.Composable] = {}
        for name in self.names():
            if name in self.values:
                args[name] = sql.Literal(self.values[name])
                continue
            column = find_column(table, name)
            if column is None:
                return f"column {name!r} not found in {table.qualified}"
            args[name] = sql.Identifier(column.name)
        return sql.SQL(self.template).format(**args)


@dataclass(frozen=True)
class ConstraintSpec:
    name: str
    table: str
    check: Predicate


@dataclass(frozen=True)
class RetentionPolicy:
    name: str
    table: str
    column: str  # the timestamp the age is measured on
    older_than_days: int
    where: Predicate | None = None  # extra condition, e.g. {isRead}
    cadence: str = "daily"

    def render(self, table: Table) -> sql.Composed | str:
        """``column < cutoff [AND where]`` for ``table``, or why it cannot be rendered.

        Prisma's ``DateTime`` is ``timestamp(3)`` without time zone holding UTC, so the cutoff
        for such a column is taken in UTC whatever the session's ``TimeZone``.
        """
        column = find_column(table, self.column)
        if column is None:
            return f"column {self.column!r} not found in {table.qualified}"
        if column.type.startswith("timestamp with"):
            now = sql.SQL("now()")
        elif column.type.startswith("timestamp") or column.type == "date":
            now = sql.SQL("(now() AT TIME ZONE 'UTC')")
        else:
            return f"column {column.name!r} of {table.qualified} is {column.type}, not a timestamp"
        condition = sql.SQL("{} < {} - make_interval(days => {})").format(
            sql.Identifier(column.name), now, sql.Literal(self.older_than_days)
        )
        if self.where is None:
            return condition
        extra = self.where.render(table)
        if isinstance(extra, str):
            return extra
        return sql.SQL("({}) AND {}").format(extra, condition)


@dataclass(frozen=True)
class Profile:
    name: str
    description: str = ""
    constraints: tuple[ConstraintSpec, ...] = ()
    retention: tuple[RetentionPolicy, ...] = ()
    source: str = "built-in"

    def constraint(self, name: str) -> ConstraintSpec:
        for spec in self.constraints:
            if spec.name == name:
                return spec
        raise KeyError(name)


def locate(catalog: Catalog, logical: str) -> Table | None:
    """The profile's table ``logical`` in this database (any naming), or None."""
    return find_table(catalog, logical)
