"""Relation fields with no index declared in ``schema.prisma`` (``relationMode = "prisma"``).

With ``relationMode = "prisma"`` Prisma creates no foreign keys, and with them goes the
index a developer gets used to seeing next to one; Prisma's schema validation warns about
every ``@relation(fields: [...])`` whose scalar fields no index of the model leads with
(prisma-engines, ``validate_missing_relation_indexes``): an ``@@index``, ``@@unique`` or
``@@id``, or the ``@unique`` / ``@id`` of a single field, whose first fields are the
relation's fields in the same order. This check applies the same rule to the schema, then
says whether the database has a covering index anyway (one made outside the schema, which
the next ``prisma migrate dev`` would drop). It judges the schema, not the database: it
reads only the catalog snapshot, and reports nothing without a schema or with
``relationMode = "foreignKeys"``.
"""

from __future__ import annotations

from typing import Final

from pgrunbook.catalog import Index, Table
from pgrunbook.discover.check import Check, CheckResult, NoThresholds
from pgrunbook.discover.checks.missing_indexes import covers
from pgrunbook.discover.context import Context
from pgrunbook.findings import Finding, Severity
from pgrunbook.prisma.model import Model, PrismaSchema, Span
from pgrunbook.prisma.relations import Declaration, columns_of, table_of

NO_SCHEMA: Final = "no Prisma schema (pass --prisma-schema, or run in the project's folder)"
FOREIGN_KEYS: Final = (
    'relationMode is "foreignKeys": every relation has a foreign key, whose indexes the '
    "missing_indexes check judges"
)
DOCS: Final = "https://pris.ly/d/relation-mode-prisma-indexes"


def index_groups(model: Model) -> list[tuple[str, tuple[str, ...]]]:
    """Every index the model declares, as (how it is written, its fields in order): Prisma's
    ``model.indexes()`` (``@@index``, ``@@unique``, ``@unique``) plus the primary key
    (``@@id``, ``@id``)."""
    groups = [
        (f"@@{index.kind}([{', '.join(f.name for f in index.fields)}])",
         tuple(f.name for f in index.fields))
        for index in model.indexes
    ]  # fmt: skip
    for field in model.fields:
        if field.is_id:
            groups.append((f"@id on {field.name}", (field.name,)))
        if field.is_unique:
            groups.append((f"@unique on {field.name}", (field.name,)))
    return groups


def covering(model: Model, fields: tuple[str, ...]) -> str | None:
    """The declared index whose leading fields are ``fields`` in this order, if any."""
    for written, group in index_groups(model):
        if group[: len(fields)] == fields:
            return written
    return None


def _database_index(table: Table, columns: tuple[str, ...]) -> Index | None:
    """A valid btree (or single-column hash) index leading with the columns, as
    missing_indexes judges it."""
    attnums = {col.num for name in columns if (col := table.column(name)) is not None}
    return next((i for i in table.indexes if covers(i, attnums)), None)


def _location(schema: PrismaSchema, span: Span | None) -> str | None:
    """``file:line`` of the relation field."""
    if span is None or span.path is None:
        return None
    text = schema.texts.get(span.path)
    return f"{span.path}:{text.count(chr(10), 0, span.start) + 1}" if text else str(span.path)


def _adopts(index: Index, table: Table, model: Model, columns: tuple[str, ...]) -> bool:
    """Whether ``@@index([fields], map: index)`` describes ``index`` exactly (plain btree on
    these columns, ascending, in order) under a name that is not Prisma's default."""
    quoted = ['"' + c.replace('"', '""') + '"' for c in columns]
    return (
        index.method == "btree"
        and not index.is_unique
        and index.predicate is None
        and index.key_count == len(columns)
        and len(index.attnums) == len(columns)
        and all(d in (c, q) for d, c, q in zip(index.key_defs, columns, quoted, strict=True))
        and index.name != "_".join((table.name, *columns, "idx"))
    )


def _fix(fields: tuple[str, ...], adopt: Index | None) -> str:
    """The line to add to the model. ``map:`` names an exactly matching database index whose
    name is not Prisma's default, so Prisma adopts it instead of building another."""
    mapped = f', map: "{adopt.name}"' if adopt is not None else ""
    return f"@@index([{', '.join(fields)}]{mapped})"


def _finding(ctx: Context, schema: PrismaSchema, decl: Declaration) -> Finding:
    model, fields = decl.model, decl.fields
    columns = tuple(model.column(f) or f for f in fields)
    table, _ = table_of(model, ctx.catalog)
    if table is not None and isinstance(columns_of(model, table, fields), str):
        table = None  # a column is missing: the database cannot have the index
    index = _database_index(table, columns) if table is not None else None
    adopt = index if index and table and _adopts(index, table, model, columns) else None
    line = _fix(fields, adopt)
    if index is not None:
        anyway = (
            f"the database has {index.name}, made outside the schema: the next prisma "
            "migrate dev drops it unless the schema declares it"
        )
    elif table is None:
        anyway = "the database does not have these columns"
    else:
        anyway = "the database has no index leading with them either"
    return Finding(
        check=CHECK.id,
        severity=Severity.WARNING,
        object=table.qualified if table else f"{ctx.catalog.schema}.{model.db_name}",
        message=f"{model.name}.{decl.field.name}: no index in schema.prisma leads with "
        f'[{", ".join(fields)}] and relationMode = "prisma" makes no foreign key, so lookups '
        f"by them and Prisma's emulated referential actions scan the table ({anyway}); add "
        f"{line} to model {model.name}",
        details={
            "model": model.name,
            "field": decl.field.name,
            "fields": list(fields),
            "table": f"{ctx.catalog.schema}.{model.db_name}",
            "columns": list(columns),
            "in_database": table is not None,
            "database_index": index.name if index else None,
            "location": _location(schema, decl.field.span),
            "docs": DOCS,
        },
        fix=line,
    )


def run(ctx: Context, limits: NoThresholds) -> CheckResult:
    schema = ctx.prisma_schema
    if schema is None or ctx.declarations is None:
        return CheckResult([], {"relation_mode": None, "reason": NO_SCHEMA})
    if schema.relation_mode != "prisma":
        return CheckResult([], {"relation_mode": schema.relation_mode, "reason": FOREIGN_KEYS})
    findings, covered = [], []
    for decl in ctx.declarations:
        written = covering(decl.model, decl.fields)
        if written is None:
            findings.append(_finding(ctx, schema, decl))
        else:
            covered.append(f"{decl.name}: {written}")
    facts = {"relation_mode": "prisma", "relations": len(ctx.declarations), "covered": covered}
    return CheckResult(findings, facts)


CHECK = Check(
    id="prisma_relation_indexes",
    title='Relation fields without an index in schema.prisma (relationMode = "prisma")',
    run=run,
    thresholds=NoThresholds(),
)
