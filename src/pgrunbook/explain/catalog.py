"""The profile's critical queries in this database's names, ready to take parameter values.

``{Message}`` becomes the schema-qualified table (``"public"."messages"`` in a snake_case
database), ``{roomId}`` the column of the entry's table (``"room_id"``), ``{Room.id}`` the
column of that other table; names are found as the profile's indexes find them
(``pgrunbook.resolve``). ``:room_id`` stays a slot until ``bind`` fills it with a literal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import sql

from pgrunbook.catalog import Catalog, Table
from pgrunbook.change.step import Skip
from pgrunbook.profile import querytext
from pgrunbook.profile.model import QuerySpec
from pgrunbook.resolve import find_column, find_table


@dataclass(frozen=True)
class CatalogQuery:
    """One critical query for this database: its pieces, parameters still open."""

    spec: QuerySpec
    table: Table
    pieces: tuple[sql.Composable | querytext.Param, ...]

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def index(self) -> str:
        return self.spec.index

    def bind(self, values: Mapping[str, Any]) -> sql.Composed:
        """The query with every ``:name`` replaced by the literal ``values[name]``."""
        parts = [
            sql.Literal(values[p.name]) if isinstance(p, querytext.Param) else p
            for p in self.pieces
        ]
        return sql.Composed(parts)


def _name(piece: querytext.Name, catalog: Catalog, table: Table) -> sql.Composable | str:
    if piece.qualified:
        other_name, column_name = piece.name.split(".", 1)
        other = find_table(catalog, other_name)
        if other is None:
            return f"table {other_name!r} not found in {catalog.schema}"
        column = find_column(other, column_name)
        if column is None:
            return f"column {column_name!r} not found in {other.qualified}"
        return sql.Identifier(column.name)
    column = find_column(table, piece.name)
    if column is not None:
        return sql.Identifier(column.name)
    other = find_table(catalog, piece.name)
    if other is not None:
        return sql.Identifier(other.schema, other.name)
    return f"{{{piece.name}}} is neither a column of {table.qualified} nor a table"


def render_query(spec: QuerySpec, catalog: Catalog) -> CatalogQuery | str:
    """``spec`` for this database, or why it cannot run here (a missing table or column)."""
    table = find_table(catalog, spec.table)
    if table is None:
        return f"table {spec.table!r} not found in {catalog.schema}"
    pieces: list[sql.Composable | querytext.Param] = []
    for piece in querytext.parse(spec.sql):  # the loader refused a malformed one
        if isinstance(piece, querytext.Text):
            pieces.append(sql.SQL(piece.text))
        elif isinstance(piece, querytext.Param):
            pieces.append(piece)
        else:
            rendered = _name(piece, catalog, table)
            if isinstance(rendered, str):
                return rendered
            pieces.append(rendered)
    return CatalogQuery(spec, table, tuple(pieces))


def render_catalog(
    catalog: Catalog, specs: Sequence[QuerySpec]
) -> tuple[list[CatalogQuery], list[Skip]]:
    """The queries that can run on this schema, and why the others cannot."""
    queries, skipped = [], []
    for spec in specs:
        rendered = render_query(spec, catalog)
        if isinstance(rendered, str):
            skipped.append(Skip(spec.name, rendered))
        else:
            queries.append(rendered)
    return queries, skipped
