"""The relations ``schema.prisma`` declares, mapped onto the database's tables.

Every ``@relation(fields: [...], references: [...])`` names the referencing scalar fields
of its model and the referenced fields of the other model. Through ``@@map`` / ``@map``
they become a child table's columns and a parent table's columns: a
``pgrunbook.relations.Relation`` with source ``"prisma"``, carrying the foreign key that
backs it when the database has one (with ``relationMode = "prisma"`` it has none). These
are the app's exact relations: discovery uses them in place of guessing from column
names.

A declaration the database does not match (its model's table or a column is missing, the
model lives in another schema) is kept with the reason, never an error: the schema and the
database are allowed to disagree, and saying where is part of the report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pgrunbook.catalog import Catalog, Constraint, Table
from pgrunbook.prisma.model import Field, Model, PrismaSchema
from pgrunbook.relations import Relation


@dataclass(frozen=True)
class Declaration:
    """One ``@relation(fields: ...)`` of the schema and what it is in the database."""

    model: Model
    field: Field  # the relation field (``room Room @relation(...)``)
    fields: tuple[str, ...]  # the referencing scalar fields (``roomId``)
    relation: Relation | None  # None: the child table or one of its columns is missing
    problem: str | None = None  # why it does not (fully) match the database

    @property
    def name(self) -> str:
        return f"{self.model.name}.{self.field.name}"

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model.name,
            "field": self.field.name,
            "fields": list(self.fields),
            "relation": self.relation.label if self.relation else None,
            "problem": self.problem,
        }


def declarations(schema: PrismaSchema, catalog: Catalog) -> list[Declaration]:
    """Every forward ``@relation`` of the schema (the side with ``fields:``), in schema
    order, matched against ``catalog`` (one database schema's tables)."""
    out = []
    for model in schema.models:
        for field in model.fields:
            rel = field.relation
            if rel is None or not rel.fields:
                continue
            out.append(_declaration(schema, catalog, model, field))
    return out


def declared_relations(schema: PrismaSchema, catalog: Catalog) -> list[Relation]:
    """The relations of ``declarations`` that the database has (child table and columns)."""
    return [d.relation for d in declarations(schema, catalog) if d.relation is not None]


def table_of(model: Model, catalog: Catalog) -> tuple[Table | None, str | None]:
    """The model's table in ``catalog``, or None and why not."""
    if model.schema is not None and model.schema != catalog.schema:
        return None, f"model {model.name} is in schema {model.schema}, not {catalog.schema}"
    table = catalog.by_name.get(model.db_name)
    if table is None:
        return None, f"model {model.name}'s table {model.db_name} is not in {catalog.schema}"
    return table, None


def columns_of(model: Model, table: Table, fields: tuple[str, ...]) -> tuple[str, ...] | str:
    """The database columns of ``fields``, or why they are not all in ``table``."""
    out = []
    for name in fields:
        column = model.column(name)
        if column is None:
            return f"model {model.name} has no field {name}"
        if table.column(column) is None:
            return f"column {column} of {model.name}.{name} is not in {table.qualified}"
        out.append(column)
    return tuple(out)


def _declaration(schema: PrismaSchema, catalog: Catalog, model: Model, field: Field) -> Declaration:
    rel = field.relation
    assert rel is not None
    child, missing = table_of(model, catalog)
    if child is None:
        return Declaration(model, field, rel.fields, None, missing)
    columns = columns_of(model, child, rel.fields)
    if isinstance(columns, str):
        return Declaration(model, field, rel.fields, None, columns)
    target = schema.model(field.type)
    if target is None:
        return Declaration(model, field, rel.fields, None, f"no model named {field.type}")
    parent_columns = tuple(target.column(name) or name for name in rel.references)
    parent, problem = table_of(target, catalog)
    if parent is not None:
        found = columns_of(target, parent, rel.references)
        if isinstance(found, str):
            parent, problem = None, found
    parent_schema = target.schema or catalog.schema
    relation = Relation(
        child=child,
        columns=columns,
        parent=parent,
        parent_name=parent.qualified if parent else f"{parent_schema}.{target.db_name}",
        parent_columns=parent_columns,
        source="prisma",
        constraint=_foreign_key(child, columns, parent, parent_columns),
    )
    return Declaration(model, field, rel.fields, relation, problem)


def _foreign_key(
    child: Table, columns: tuple[str, ...], parent: Table | None, parent_columns: tuple[str, ...]
) -> Constraint | None:
    """The child's foreign key on exactly these columns to exactly the parent's columns."""
    if parent is None:
        return None
    for fk in child.foreign_keys:
        if (
            fk.ref_table_oid == parent.oid
            and tuple(child.column_names(fk.columns)) == columns
            and tuple(parent.column_names(fk.ref_columns)) == parent_columns
        ):
            return fk
    return None
