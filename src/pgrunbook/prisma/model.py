"""What pgrunbook reads from a ``schema.prisma``: the datasource, generators, enums and
models with their fields, relations, ids, indexes and unique constraints.

Names are kept both as Prisma names (``roomId``) and database names (``@map`` /
``@@map``), and every block and attribute keeps its place in the source (``Span``) so that
edits can be made as a minimal patch that keeps the user's formatting and comments.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Sort = Literal["Asc", "Desc"]


@dataclass(frozen=True)
class Span:
    """A place in one schema file: ``start``/``end`` are character offsets (end exclusive)."""

    path: Path | None
    start: int
    end: int


@dataclass(frozen=True)
class Datasource:
    name: str
    provider: str
    relation_mode: str = "foreignKeys"  # or "prisma"
    url_env: str | None = None
    direct_url_env: str | None = None
    schemas: tuple[str, ...] = ()
    span: Span | None = None


@dataclass(frozen=True)
class Generator:
    name: str
    provider: str
    preview_features: tuple[str, ...] = ()
    span: Span | None = None


@dataclass(frozen=True)
class Enum:
    name: str
    db_name: str  # @@map, else the name
    values: tuple[str, ...]
    span: Span | None = None


@dataclass(frozen=True)
class RelationAttr:
    """``@relation(name?, fields: [...], references: [...], onDelete: ...)``."""

    name: str | None
    fields: tuple[str, ...]  # Prisma field names on this model (empty on the back side)
    references: tuple[str, ...]  # Prisma field names on the other model
    on_delete: str | None = None
    map: str | None = None  # the foreign key's name in the database


@dataclass(frozen=True)
class Field:
    name: str
    type: str  # the Prisma type without ? or []: String, Int, DateTime, a model or an enum
    db_name: str  # @map, else the name
    optional: bool = False
    is_list: bool = False
    is_id: bool = False
    is_unique: bool = False
    is_updated_at: bool = False  # @updatedAt
    native_type: str | None = None  # @db.Timestamp(3) -> "Timestamp(3)"
    default: str | None = None  # the raw text inside @default(...)
    relation: RelationAttr | None = None
    span: Span | None = None


@dataclass(frozen=True)
class IndexField:
    name: str  # Prisma field name
    sort: Sort | None = None
    length: int | None = None
    ops: str | None = None


@dataclass(frozen=True)
class IndexAttr:
    """``@@index``, ``@@unique`` or ``@@id`` (``kind``), with its arguments."""

    kind: Literal["index", "unique", "id"]
    fields: tuple[IndexField, ...]
    map: str | None = None  # the index's name in the database
    name: str | None = None  # Prisma's client name (name:)
    type: str | None = None  # Hash, Gin, ... (type:)
    where: str | None = None  # where: raw("...") (partialIndexes preview)
    span: Span | None = None


@dataclass(frozen=True)
class Model:
    name: str
    db_name: str  # @@map, else the name
    fields: tuple[Field, ...]
    indexes: tuple[IndexAttr, ...] = ()  # block attributes @@index / @@unique / @@id
    schema: str | None = None  # @@schema (multiSchema)
    span: Span | None = None

    def field(self, name: str) -> Field | None:
        return next((f for f in self.fields if f.name == name), None)

    def column(self, field_name: str) -> str | None:
        """The database column of a scalar field."""
        found = self.field(field_name)
        return found.db_name if found else None


@dataclass(frozen=True)
class PrismaSchema:
    datasource: Datasource | None
    generators: tuple[Generator, ...] = ()
    enums: tuple[Enum, ...] = ()
    models: tuple[Model, ...] = ()
    files: tuple[Path, ...] = ()  # the files read (one, or a folder's *.prisma files)
    texts: dict[Path, str] = field(default_factory=dict, repr=False)  # their text, for patches

    def model(self, name: str) -> Model | None:
        return next((m for m in self.models if m.name == name), None)

    def model_for_table(self, table: str) -> Model | None:
        """The model mapped to a database table name."""
        return next((m for m in self.models if m.db_name == table), None)

    @property
    def relation_mode(self) -> str:
        return self.datasource.relation_mode if self.datasource else "foreignKeys"

    @property
    def preview_features(self) -> tuple[str, ...]:
        return tuple(f for g in self.generators for f in g.preview_features)
