"""Relations between tables: declared foreign keys, and ones inferred from column names.

Prisma's ``relationMode = "prisma"`` and many hand-made schemas have relations with no
foreign key. A column named ``roomId`` or ``room_id`` whose stem names a table (``Room``,
``rooms``) and whose type matches that table's single-column primary key is taken as a
relation to it. When the app's ``schema.prisma`` is known, its ``@relation`` declarations
(``pgrunbook.prisma.relations``) replace that guess: ``with_declared``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

from pgrunbook.catalog import Catalog, Constraint, Table
from pgrunbook.resolve import find_table

# foreign_key: a constraint in the catalog; inferred: guessed from a column name; prisma:
# declared by an @relation in schema.prisma (with its constraint when the database has one)
Source = Literal["foreign_key", "inferred", "prisma"]

_ID_SUFFIX: Final = re.compile(r"^(?P<stem>.+?)(?:Id|_id|ID)$")


@dataclass(frozen=True)
class Relation:
    child: Table
    columns: tuple[str, ...]
    parent: Table | None  # None when the parent is outside the catalog's schema
    parent_name: str  # schema.table of the parent
    parent_columns: tuple[str, ...]
    source: Source
    constraint: Constraint | None = None

    @property
    def validated(self) -> bool:
        return self.constraint is not None and self.constraint.validated

    @property
    def constraint_oid(self) -> int | None:
        return self.constraint.oid if self.constraint is not None else None

    @property
    def label(self) -> str:
        cols, parent_cols = ", ".join(self.columns), ", ".join(self.parent_columns)
        return f"{self.child.qualified}({cols}) -> {self.parent_name}({parent_cols})"


def foreign_keys(catalog: Catalog) -> list[Relation]:
    out = []
    for table in catalog:
        for fk in table.foreign_keys:
            parent = catalog.by_oid.get(fk.ref_table_oid or -1)
            parent_cols = tuple(parent.column_names(fk.ref_columns)) if parent else ()
            out.append(
                Relation(
                    child=table,
                    columns=tuple(table.column_names(fk.columns)),
                    parent=parent,
                    parent_name=f"{fk.ref_schema}.{fk.ref_table}",
                    parent_columns=parent_cols,
                    source="foreign_key",
                    constraint=fk,
                )
            )
    return out


def _single_key(table: Table) -> str | None:
    pk = table.primary_key
    if pk is None or not pk.columns or len(pk.columns) != 1:
        return None
    return table.column_names(pk.columns)[0]


def inferred(catalog: Catalog) -> list[Relation]:
    """Relations implied by ``<table>Id`` / ``<table>_id`` columns with no foreign key."""
    out = []
    for table in catalog:
        constrained = {name for fk in table.foreign_keys for name in table.column_names(fk.columns)}
        for column in table.columns:
            match = _ID_SUFFIX.match(column.name)
            if match is None or column.name in constrained:
                continue
            parent = find_table(catalog, match["stem"])
            if parent is None:
                continue
            key = _single_key(parent)
            parent_key = parent.column(key) if key else None
            if parent_key is None or parent_key.type_oid != column.type_oid:
                continue
            if parent is table and key == column.name:
                continue
            out.append(
                Relation(
                    child=table,
                    columns=(column.name,),
                    parent=parent,
                    parent_name=parent.qualified,
                    parent_columns=(parent_key.name,),
                    source="inferred",
                )
            )
    return out


def all_relations(catalog: Catalog) -> list[Relation]:
    return foreign_keys(catalog) + inferred(catalog)


def with_declared(catalog: Catalog, declared: Sequence[Relation]) -> list[Relation]:
    """The relations an app declares (``schema.prisma``), in place of the inferred ones, plus
    the foreign keys no declaration stands for (a foreign key made outside the schema)."""
    claimed = {r.constraint.oid for r in declared if r.constraint is not None}
    return [*declared, *(r for r in foreign_keys(catalog) if r.constraint_oid not in claimed)]
