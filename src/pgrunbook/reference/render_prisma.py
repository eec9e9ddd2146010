"""Render the reference schema as ``schema.prisma`` (Prisma naming, or snake_case via @map)."""

from __future__ import annotations

from typing import Final

from pgrunbook.reference.model import Column, ForeignKey, Index, Schema, Table
from pgrunbook.reference.naming import Naming

_PRISMA_TYPES: Final = {
    "uuid": "String",
    "text": "String",
    "int": "Int",
    "bool": "Boolean",
    "timestamp": "DateTime",
    "jsonb": "Json",
}
_ACTIONS: Final = {"RESTRICT": "Restrict", "CASCADE": "Cascade", "SET NULL": "SetNull"}

HEADER: Final = """\
// The Ali backend: pgrunbook's reference schema ({naming} naming).
// Rendered from src/pgrunbook/reference/model.py; regenerate with
// `python -m pgrunbook.reference.write` after changing the model.
//
// Three relations are logical only (no foreign key, as with relationMode = "prisma"):
// Message.roomId -> Room.id, GiftSend.roomId -> Room.id, Notification.userId -> User.id.

generator client {{
  provider = "prisma-client-js"
}}

datasource db {{
  provider  = "postgresql"
  url       = env("DATABASE_URL")
  directUrl = env("DIRECT_URL")
}}
"""


def _lcfirst(name: str) -> str:
    return name[:1].lower() + name[1:]


def _default(schema: Schema, col: Column) -> str | None:
    if col.default is None:
        return None
    if col.default == "CURRENT_TIMESTAMP":
        return "now()"
    if schema.enum(col.type) is not None:
        return col.default.strip("'")
    return col.default


def _relation_field(fk: ForeignKey) -> str:
    return fk.field or (fk.column[:-2] if fk.column.endswith("Id") else f"{fk.column}Rel")


def _is_one_to_one(table: Table, fk: ForeignKey) -> bool:
    return any(i.unique and i.columns == (fk.column,) for i in table.indexes)


def _align(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows if len(r) > i) for i in range(2)]
    out = []
    for row in rows:
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1]) if len(row) > 2 else row[1]]
        out.append("  " + " ".join([*cells, *row[2:]]).rstrip())
    return out


def _model(schema: Schema, table: Table, naming: Naming) -> str:
    rows: list[list[str]] = []
    docs: dict[int, str] = {}
    logical = {fk.column: fk for fk in table.foreign_keys if not fk.enforced}
    single_unique = {i.columns[0] for i in table.indexes if i.unique and len(i.columns) == 1}
    for col in table.columns:
        enum = schema.enum(col.type)
        type_name = enum.name if enum else _PRISMA_TYPES[col.type]
        attrs: list[str] = []
        if col.name == table.primary_key:
            attrs += ["@id", "@default(uuid())"]
        if col.name in single_unique:
            attrs.append("@unique")
        default = None if col.name == table.primary_key else _default(schema, col)
        if default is not None:
            attrs.append(f"@default({default})")
        if col.updated_at:
            attrs.append("@updatedAt")
        if naming is Naming.SNAKE and naming.column(col.name) != col.name:
            attrs.append(f'@map("{naming.column(col.name)}")')
        if col.type == "uuid":
            attrs.append("@db.Uuid")
        if col.name in logical:
            docs[len(rows)] = (
                f"/// Logical relation to {logical[col.name].references}.id: no foreign key."
            )
        rows.append([col.name, type_name + ("?" if col.nullable else ""), " ".join(attrs)])
    for fk in table.foreign_keys:
        if not fk.enforced:
            continue
        args = []
        if fk.relation_name:
            args.append(f'"{fk.relation_name}"')
        args += [
            f"fields: [{fk.column}]",
            "references: [id]",
            f"onDelete: {_ACTIONS[fk.on_delete]}",
        ]
        optional = "?" if table.column(fk.column).nullable else ""
        rows.append(
            [_relation_field(fk), f"{fk.references}{optional}", f"@relation({', '.join(args)})"]
        )
    for child in schema.tables:
        for fk in child.foreign_keys:
            if fk.references != table.name or not fk.enforced:
                continue
            one = _is_one_to_one(child, fk)
            name = fk.back_field or _lcfirst(child.name) + ("" if one else "s")
            kind = f"{child.name}?" if one else f"{child.name}[]"
            rel = f'@relation("{fk.relation_name}")' if fk.relation_name else ""
            rows.append([name, kind, rel])
    lines = _align(rows)
    for pos in sorted(docs, reverse=True):
        lines.insert(pos, f"  {docs[pos]}")
    block: list[str] = []
    for index in table.indexes:
        if index.unique and len(index.columns) == 1:
            continue
        block.append(_index_line(table, index, naming))
    if naming is Naming.SNAKE:
        block.append(f'@@map("{naming.table(table.name)}")')
    body = "\n".join(lines)
    if block:
        body += "\n\n" + "\n".join(f"  {b}" for b in block)
    doc = "".join(f"/// {line}\n" for line in table.doc.splitlines())
    return f"{doc}model {table.name} {{\n{body}\n}}"


def _index_line(table: Table, index: Index, naming: Naming) -> str:
    attr = "@@unique" if index.unique else "@@index"
    args = f"[{', '.join(index.columns)}]"
    default_name = Index(index.columns, index.unique).physical_name(table.name, naming)
    name = index.physical_name(table.name, naming)
    if name != default_name:
        args += f', map: "{name}"'
    line = f"{attr}({args})"
    if index.anomaly:
        line += f" // deliberate defect: {index.anomaly}"
    return line


def schema_prisma(schema: Schema, naming: Naming) -> str:
    parts = [HEADER.format(naming=naming.value)]
    for enum in schema.enums:
        values = "\n".join(f"  {v}" for v in enum.values)
        if naming is Naming.SNAKE:
            values += f'\n\n  @@map("{naming.enum_type(enum.name)}")'
        parts.append(f"enum {enum.name} {{\n{values}\n}}\n")
    for table in schema.tables:
        parts.append(_model(schema, table, naming) + "\n")
    return "\n".join(parts)
