"""Render the reference schema as SQL, in the shape Prisma Migrate writes it.

``migration_sql`` is the text of the ``init`` migration. ``load_statements`` splits the same
objects into what the seed creates before loading data (types, bare tables) and after it
(keys, indexes, foreign keys), the way pg_restore does, so bulk loading stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql

from pgrunbook.reference.model import SQL_TYPES, Schema, Table
from pgrunbook.reference.naming import Naming


@dataclass(frozen=True)
class LoadStatements:
    pre_data: list[sql.Composed]
    post_data: list[sql.Composed]


def _ident(name: str) -> sql.Identifier:
    return sql.Identifier(name)


def _column_type(schema: Schema, type_name: str, naming: Naming) -> sql.Composable:
    if schema.enum(type_name) is not None:
        return _ident(naming.enum_type(type_name))
    return sql.SQL(SQL_TYPES[type_name])


def create_enum(schema: Schema, name: str, naming: Naming) -> sql.Composed:
    enum = schema.enum(name)
    assert enum is not None
    return sql.SQL("CREATE TYPE {} AS ENUM ({})").format(
        _ident(naming.enum_type(name)), sql.SQL(", ").join(sql.Literal(v) for v in enum.values)
    )


def create_table(
    schema: Schema, table: Table, naming: Naming, with_primary_key: bool = True
) -> sql.Composed:
    lines: list[sql.Composable] = []
    for col in table.columns:
        parts: list[sql.Composable] = [
            _ident(naming.column(col.name)),
            _column_type(schema, col.type, naming),
        ]
        if not col.nullable:
            parts.append(sql.SQL("NOT NULL"))
        if col.default is not None:
            parts.append(sql.SQL("DEFAULT {}").format(sql.SQL(col.default)))
        lines.append(sql.SQL("    ") + sql.SQL(" ").join(parts))
    body = sql.SQL(",\n").join(lines)
    if with_primary_key:
        body = body + sql.SQL(",\n\n    ") + _primary_key_clause(table, naming)
    return sql.SQL("CREATE TABLE {} (\n{}\n)").format(_ident(naming.table(table.name)), body)


def _primary_key_clause(table: Table, naming: Naming) -> sql.Composed:
    return sql.SQL("CONSTRAINT {} PRIMARY KEY ({})").format(
        _ident(f"{naming.table(table.name)}_pkey"), _ident(naming.column(table.primary_key))
    )


def add_primary_key(table: Table, naming: Naming) -> sql.Composed:
    return sql.SQL("ALTER TABLE {} ADD {}").format(
        _ident(naming.table(table.name)), _primary_key_clause(table, naming)
    )


def create_indexes(table: Table, naming: Naming) -> list[sql.Composed]:
    out = []
    for index in table.indexes:
        out.append(
            sql.SQL("CREATE {}INDEX {} ON {}({})").format(
                sql.SQL("UNIQUE ") if index.unique else sql.SQL(""),
                _ident(index.physical_name(table.name, naming)),
                _ident(naming.table(table.name)),
                sql.SQL(", ").join(_ident(naming.column(c)) for c in index.columns),
            )
        )
    return out


def add_foreign_keys(table: Table, naming: Naming) -> list[sql.Composed]:
    out = []
    for fk in table.foreign_keys:
        if not fk.enforced:
            continue
        out.append(
            sql.SQL(
                "ALTER TABLE {} ADD CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {}({}) "
                "ON DELETE {} ON UPDATE CASCADE"
            ).format(
                _ident(naming.table(table.name)),
                _ident(fk.physical_name(table.name, naming)),
                _ident(naming.column(fk.column)),
                _ident(naming.table(fk.references)),
                _ident("id"),
                sql.SQL(fk.on_delete),
            )
        )
    return out


def load_statements(schema: Schema, naming: Naming) -> LoadStatements:
    pre: list[sql.Composed] = [create_enum(schema, e.name, naming) for e in schema.enums]
    pre += [create_table(schema, t, naming, with_primary_key=False) for t in schema.tables]
    post: list[sql.Composed] = [add_primary_key(t, naming) for t in schema.tables]
    for table in schema.tables:
        post += create_indexes(table, naming)
    for table in schema.tables:
        post += add_foreign_keys(table, naming)
    return LoadStatements(pre, post)


def migration_sql(schema: Schema, naming: Naming) -> str:
    """The ``init`` migration as ``prisma migrate dev`` would write it."""
    chunks: list[str] = []
    for enum in schema.enums:
        chunks.append("-- CreateEnum\n" + create_enum(schema, enum.name, naming).as_string() + ";")
    for table in schema.tables:
        chunks.append("-- CreateTable\n" + create_table(schema, table, naming).as_string() + ";")
    for table in schema.tables:
        chunks += ["-- CreateIndex\n" + s.as_string() + ";" for s in create_indexes(table, naming)]
    for table in schema.tables:
        chunks += [
            "-- AddForeignKey\n" + s.as_string() + ";" for s in add_foreign_keys(table, naming)
        ]
    return "\n\n".join(chunks) + "\n"
