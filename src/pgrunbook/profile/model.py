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

from pgrunbook.catalog import Table
from pgrunbook.resolve import find_column

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
class ConstraintFix:
    """How ``pgrunbook fix constraints`` repairs the rows that violate a constraint.

    ``set`` is an assignment list over logical column names (``{balance} = 0``) applied to
    the violating rows; ``delete`` removes them. Either way the old rows go to the audit log.
    A constraint without a fix is left for the user to repair by hand.
    """

    set: Predicate | None = None
    delete: bool = False
    note: str = ""  # the documented strategy, in one sentence

    @property
    def strategy(self) -> str:
        return "update" if self.set is not None else "delete" if self.delete else "manual"


@dataclass(frozen=True)
class ConstraintSpec:
    name: str
    table: str
    check: Predicate
    fix: ConstraintFix = field(default_factory=ConstraintFix)


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
class IndexColumn:
    name: str  # logical column name
    descending: bool = False

    @classmethod
    def parse(cls, text: str) -> IndexColumn:
        """``"createdAt DESC"`` -> IndexColumn("createdAt", True)."""
        parts = text.split()
        if (
            not parts
            or len(parts) > 2
            or (len(parts) == 2 and parts[1].upper() not in ("ASC", "DESC"))
        ):
            raise ValueError(f"not a column with an optional ASC/DESC: {text!r}")
        return cls(parts[0], len(parts) == 2 and parts[1].upper() == "DESC")


@dataclass(frozen=True)
class RenderedIndex:
    columns: sql.Composed  # ("roomId", "createdAt" DESC)
    predicate: sql.Composed | None


@dataclass(frozen=True)
class IndexSpec:
    """One of the runbook's indexes (script 02), and the queries it serves."""

    name: str
    table: str
    columns: tuple[IndexColumn, ...]
    # Alternative partial-index predicates, first one whose columns exist wins
    # (e.g. {isDeleted} = false, or {deletedAt} IS NULL); empty: a full index.
    where: tuple[Predicate, ...] = ()
    serves: str = ""

    def render(self, table: Table) -> RenderedIndex | str:
        """Columns and predicate in ``table``'s real names, or why it cannot be built."""
        parts = []
        for col in self.columns:
            found = find_column(table, col.name)
            if found is None:
                return f"column {col.name!r} not found in {table.qualified}"
            ident = sql.Identifier(found.name)
            parts.append(sql.SQL("{} DESC").format(ident) if col.descending else ident)
        columns = sql.SQL("({})").format(sql.SQL(", ").join(parts))
        if not self.where:
            return RenderedIndex(columns, None)
        reasons = []
        for predicate in self.where:
            rendered = predicate.render(table)
            if not isinstance(rendered, str):
                return RenderedIndex(columns, rendered)
            reasons.append(rendered)
        return "no predicate fits: " + "; ".join(reasons)


@dataclass(frozen=True)
class AuditSpec:
    """Script 04: the audit table (logical name; ``audit_logs`` in a snake_case database)
    and the tables that get the optional row-change audit trigger."""

    table: str = "AuditLog"
    row_change_tables: tuple[str, ...] = ()


@dataclass(frozen=True)
class RolesSpec:
    """Script 05: the three application roles."""

    user: str = "app_user"  # reads and writes data, uses sequences, no DDL
    readonly: str = "app_readonly"  # reads only
    admin: str = "app_admin"  # everything on the schema

    def names(self) -> tuple[str, str, str]:
        return (self.user, self.readonly, self.admin)


@dataclass(frozen=True)
class ParamSpec:
    """How ``pgrunbook explain`` fills one ``:name`` of a critical query.

    Either a fixed ``value``, or sampled from the data: ``source`` names a grouping column
    (``Message.roomId``) whose groups are counted (only the rows matching ``where``, a
    predicate over that table); the hot value is the one with the most rows, the typical
    value the median one.
    """

    value: Any = None
    source: str = ""  # "Table.column" to sample from; empty: the fixed value
    where: Predicate | None = None

    @property
    def sampled(self) -> bool:
        return bool(self.source)

    @property
    def source_table(self) -> str:
        return self.source.split(".", 1)[0]

    @property
    def source_column(self) -> str:
        return self.source.split(".", 1)[1]


@dataclass(frozen=True)
class QuerySpec:
    """One of the app's critical queries (runbook script 10) and the index it should use.

    ``sql`` is written in the runbook's names: ``{Message}`` is a table, ``{roomId}`` a
    column of ``table``, ``{Room.id}`` a column of another table; ``:room_id`` is a
    parameter, filled as ``params`` says.
    """

    name: str
    table: str
    sql: str
    index: str  # the index it should use (one of the profile's, or any other)
    description: str = ""
    params: Mapping[str, ParamSpec] = field(default_factory=dict)
    # other indexes that serve it as well (a plan using one of them passes too), e.g. the
    # (walletId, type, createdAt) index for a wallet's few transactions
    accept: tuple[str, ...] = ()

    @property
    def sampled(self) -> bool:
        return any(p.sampled for p in self.params.values())


@dataclass(frozen=True)
class Profile:
    name: str
    description: str = ""
    constraints: tuple[ConstraintSpec, ...] = ()
    retention: tuple[RetentionPolicy, ...] = ()
    indexes: tuple[IndexSpec, ...] = ()
    queries: tuple[QuerySpec, ...] = ()
    audit: AuditSpec = field(default_factory=AuditSpec)
    roles: RolesSpec = field(default_factory=RolesSpec)
    source: str = "built-in"

    def query(self, name: str) -> QuerySpec:
        for spec in self.queries:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def constraint(self, name: str) -> ConstraintSpec:
        for spec in self.constraints:
            if spec.name == name:
                return spec
        raise KeyError(name)
