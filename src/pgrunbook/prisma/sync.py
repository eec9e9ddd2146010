"""``pgrunbook prisma sync``: Prisma migrations and ``schema.prisma`` edits for what pgrunbook
applied (from its journal), or would apply (``planned``: the steps' plans).

- Migrations (``migrations.py``): for every operation in force that no pgrunbook migration
  records yet, new folders with its re-runnable SQL; for every operation a pgrunbook
  migration created and ``pgrunbook rollback`` undid since, new ``..._pgrunbook_rollback_...``
  folders with the recorded inverse. A folder that exists is never changed.
- ``schema.prisma``: an ``@@index(..., map: "...")`` per plain index pgrunbook made (columns,
  order and DESC as the catalog has them), a partial one with ``where: raw(...)`` when the
  schema enables the ``partialIndexes`` preview feature and otherwise a ``//`` comment saying
  why it lives only in the migration SQL, and an ``AuditLog`` model for the audit table the
  audit step created; what was rolled back is taken out again.
- The ``npx prisma migrate resolve --applied <name>`` commands: every database where
  pgrunbook already did the work must record the new migrations as applied, not run them.

Running it twice writes nothing the second time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from psycopg import sql

from pgrunbook.catalog import INDOPTION_DESC, Index, Table
from pgrunbook.change.engine import plan_steps
from pgrunbook.change.journal import Journal
from pgrunbook.change.operation import Operation
from pgrunbook.change.refs import RefKind
from pgrunbook.change.step import Step, StepContext
from pgrunbook.change.steps import STEPS
from pgrunbook.change.steps.audit import ID as AUDIT
from pgrunbook.change.steps.audit import audit_target
from pgrunbook.change.steps.audit.ddl import INDEXES as AUDIT_INDEXES
from pgrunbook.change.steps.audit.target import COLUMNS as AUDIT_COLUMNS
from pgrunbook.change.steps.indexes.wanted import ID as INDEXES
from pgrunbook.change.steps.indexes.wanted import Found, survey
from pgrunbook.errors import ConfigError
from pgrunbook.prisma.migrations import (
    Layout,
    Migration,
    Rendered,
    Tracked,
    migrated,
    next_start,
    read_recorded,
    rerunnable,
)
from pgrunbook.prisma.model import Field, Model, PrismaSchema
from pgrunbook.prisma.parse import parse_text
from pgrunbook.prisma.patch import add, index_attr, partial_indexes_allowed, remove, unified_diff
from pgrunbook.rows import fetch

AUDIT_MODEL: Final = "AuditLog"
RESOLVE: Final = "npx prisma migrate resolve --applied {name}"
# the comment left in a model for an index schema.prisma cannot describe
COMMENT_PREFIX: Final = "// pgrunbook index "
# the comment's line; with the blank line before it when it is the model's last line (what
# ``add`` put there when the model had no block attribute), as ``remove`` does for @@index
_COMMENT_LINES: Final = (
    r"^[ \t]*(?:\r\n|\n|\r)[ \t]*// pgrunbook index {name}:[^\r\n]*(?:\r\n|\n|\r)(?=[ \t]*\}})",
    r"^[ \t]*// pgrunbook index {name}:[^\r\n]*(?:\r\n|\n|\r)?",
)

# The audit table's columns as the catalog has them (type, NOT NULL, default, primary key).
AUDIT_COLUMNS_SQL: Final = """
SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type,
       a.attnotnull AS not_null, pg_get_expr(d.adbin, d.adrelid) AS default_expr,
       EXISTS (SELECT 1 FROM pg_constraint c
                WHERE c.conrelid = a.attrelid AND c.contype = 'p'
                  AND c.conkey = ARRAY[a.attnum]) AS is_id
  FROM pg_attribute a
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE a.attrelid = to_regclass(%(table)s) AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attnum
"""


@dataclass(frozen=True)
class IndexShape:
    """A pgrunbook index as schema.prisma describes it: its table's key columns in order
    (``(column, descending)``) and its predicate."""

    name: str
    table: str
    columns: tuple[tuple[str, bool], ...]
    predicate: str | None
    step: str


@dataclass
class AuditColumn:
    name: str
    type: str  # format_type()
    not_null: bool
    default_expr: str | None
    is_id: bool


@dataclass
class SyncPlan:
    """What ``prisma sync`` writes (``write()``), or prints with ``--dry-run``."""

    migrations_dir: Path
    schema: PrismaSchema
    planned: bool
    migrations: list[Migration] = field(default_factory=list)
    schema_texts: dict[Path, str] = field(default_factory=dict)  # changed files only
    warnings: list[str] = field(default_factory=list)
    schema_arg: str | None = None  # --schema for the printed prisma commands

    @property
    def changes(self) -> bool:
        return bool(self.migrations or self.schema_texts)

    @property
    def diff(self) -> str:
        return unified_diff(self.schema, self.schema_texts)

    def resolve_commands(self) -> list[str]:
        """``npx prisma migrate resolve --applied <name>`` per new migration, in order."""
        extra = f" --schema {self.schema_arg}" if self.schema_arg else ""
        return [RESOLVE.format(name=m.name) + extra for m in self.migrations]

    def files(self) -> dict[Path, str]:
        """Every file ``write()`` writes, with its text."""
        out = {self.migrations_dir / m.path: m.render() for m in self.migrations}
        out.update(self.schema_texts)
        return out

    def write(self) -> list[Path]:
        """Create the new migration folders (never an existing one) and save the schema."""
        written = []
        for migration in self.migrations:
            folder = self.migrations_dir / migration.name
            try:
                folder.mkdir()
            except FileExistsError:
                raise ConfigError(
                    f"migration folder {folder} already exists; pgrunbook never changes one",
                    "run pgrunbook prisma sync again (it picks a new timestamp)",
                ) from None
            path = folder / migration.path.name
            path.write_text(migration.render(), encoding="utf-8")
            written.append(path)
        for path, text in self.schema_texts.items():
            with path.open("w", encoding="utf-8", newline="") as handle:  # keep its newlines
                handle.write(text)
            written.append(path)
        return written

    def to_json(self) -> dict[str, Any]:
        return {
            "planned": self.planned,
            "migrations_dir": str(self.migrations_dir),
            "migrations": [
                {
                    "name": m.name,
                    "kind": m.kind,
                    "step": m.step,
                    "objects": [t.object for t in m.objects],
                    "sql": m.render(),
                }
                for m in self.migrations
            ],
            "schema_files": [str(p) for p in sorted(self.schema_texts)],
            "diff": self.diff,
            "resolve": self.resolve_commands(),
            "warnings": self.warnings,
        }


# --- what pgrunbook did ------------------------------------------------------------------


@dataclass
class _Work:
    """The operations to put into migrations and into schema.prisma."""

    applied: list[Operation] = field(default_factory=list)  # in force (or planned), in order
    rolled_back: list[Operation] = field(default_factory=list)  # undone since, newest first
    shapes: dict[str, IndexShape] = field(default_factory=dict)  # planned indexes by name


def _journal_work(ctx: StepContext, steps: Sequence[Step], out: _Work, warnings: list[str]) -> None:
    ids = {s.id for s in steps}
    latest = [e for e in Journal(ctx.conn).latest() if e.step in ids]
    for entry in sorted(latest, key=lambda e: e.id):
        if entry.action == "apply" and entry.outcome == "done":
            out.applied.append(entry.as_operation())
        elif entry.action == "apply" and entry.outcome == "started":
            warnings.append(
                f"{entry.object}: a pgrunbook run stopped while applying it; run pgrunbook "
                "apply to finish it, then prisma sync"
            )
        elif entry.action == "rollback" and entry.outcome == "done":
            out.rolled_back.append(entry.as_operation())


def _planned_work(ctx: StepContext, steps: Sequence[Step], out: _Work) -> None:
    for plan in plan_steps(ctx, steps):
        out.applied += plan.operations
    for entry in survey(ctx):
        if isinstance(entry, Found):
            wanted = entry.wanted
            columns = tuple(
                (wanted.table.column_by_num[num].name, bool(opt & INDOPTION_DESC))
                for num, opt in zip(wanted.attnums, wanted.options, strict=True)
            )
            out.shapes[wanted.name] = IndexShape(
                wanted.name, wanted.table.name, columns, wanted.predicate, INDEXES
            )
    target = audit_target(ctx)
    for spec in AUDIT_INDEXES:
        name = target.index_name(spec.suffix)
        columns = tuple((target.columns[logical], desc) for logical, desc in spec.columns)
        out.shapes[name] = IndexShape(name, target.name, columns, None, AUDIT)


def _step_order(steps: Sequence[Step]) -> dict[str, int]:
    return {s.id: n for n, s in enumerate(steps)}


def _migrations(
    ctx: StepContext,
    work: _Work,
    migrations_dir: Path,
    steps: Sequence[Step],
    now: datetime | None,
    warnings: list[str],
) -> list[Migration]:
    state = migrated(read_recorded(migrations_dir))
    roles = (ctx.profile.roles.user, ctx.profile.roles.readonly, ctx.profile.roles.admin)
    layout = Layout(next_start(migrations_dir, now))
    # undone: newest first, as the rollback ran; a step's folders together
    undo: dict[str, list[tuple[Rendered, Tracked]]] = {}
    for op in work.rolled_back:
        if state.get(op.object) is None:
            continue  # no pgrunbook migration creates it (or one already undoes it)
        rendered = rerunnable(op.reverse(), roles) if op.reverse_sql else Rendered(op, None)
        undo.setdefault(op.step, []).append((rendered, Tracked(op.object, op.definition_hash)))
    for step, items in undo.items():
        layout.add_step(step, "rollback", [r for r, _ in items], [t for _, t in items])
    todo: dict[str, list[tuple[Rendered, Tracked]]] = {}
    for op in work.applied:
        recorded = state.get(op.object)
        if recorded is not None:
            if recorded.definition_hash != op.definition_hash:
                warnings.append(
                    f"{op.object}: its SQL changed since the pgrunbook migration that creates "
                    "it was written; that migration is left as it is (Prisma checksums it)"
                )
            continue
        tracked = Tracked(op.object, op.definition_hash)
        todo.setdefault(op.step, []).append((rerunnable(op, roles), tracked))
    order = _step_order(steps)
    for step in sorted(todo, key=lambda s: order.get(s, len(order))):
        items = todo[step]
        layout.add_step(step, "apply", [r for r, _ in items], [t for _, t in items])
    return layout.migrations


# --- schema.prisma -----------------------------------------------------------------------


def _is_index(op: Operation) -> bool:
    return op.ref is not None and op.ref.kind is RefKind.INDEX and op.reverse_sql is not None


def _is_audit_table(op: Operation) -> bool:
    return op.step == AUDIT and op.ref is not None and op.ref.kind is RefKind.TABLE


def _catalog_shape(table: Table, index: Index, step: str) -> IndexShape | None:
    keys = list(zip(index.attnums[: index.key_count], index.options, strict=False))
    if any(num == 0 or num not in table.column_by_num for num, _ in keys):
        return None  # an expression: schema.prisma cannot say it
    columns = tuple((table.column_by_num[n].name, bool(o & INDOPTION_DESC)) for n, o in keys)
    return IndexShape(index.name, table.name, columns, index.predicate, step)


def _shape(ctx: StepContext, op: Operation, work: _Work) -> IndexShape | None:
    assert op.ref is not None
    for table in ctx.catalog:
        for index in table.indexes:
            if index.name == op.ref.name:
                return _catalog_shape(table, index, op.step)
    return work.shapes.get(op.ref.name)


def _camel(column: str) -> str:
    head, *rest = column.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _prisma_type(column: AuditColumn) -> tuple[str, str | None]:
    """The Prisma scalar type and native type attribute of a column."""
    found = re.fullmatch(r"character varying\((\d+)\)", column.type)
    if found:
        return "String", f"@db.VarChar({found.group(1)})"
    found = re.fullmatch(r"timestamp\((\d)\) without time zone", column.type)
    if found:
        return "DateTime", f"@db.Timestamp({found.group(1)})"
    found = re.fullmatch(r"timestamp\((\d)\) with time zone", column.type)
    if found:
        return "DateTime", f"@db.Timestamptz({found.group(1)})"
    simple = {
        "uuid": ("String", "@db.Uuid"),
        "text": ("String", None),
        "jsonb": ("Json", None),
        "json": ("Json", "@db.Json"),
        "integer": ("Int", None),
        "bigint": ("BigInt", None),
        "boolean": ("Boolean", None),
    }
    return simple.get(column.type, (f'Unsupported("{column.type}")', None))


def _prisma_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _audit_columns(ctx: StepContext, table: str, planned: bool) -> list[AuditColumn]:
    """The audit table's columns: from the catalog, or (planned, not created yet) as the
    audit step will create them."""
    target = audit_target(ctx)
    regclass = sql.Identifier(ctx.schema, table).as_string()
    found = fetch(ctx.conn, AuditColumn, AUDIT_COLUMNS_SQL, {"table": regclass})
    if found or not planned:
        return found
    out = []
    for spec in AUDIT_COLUMNS:
        _, _, default = spec.ddl.partition(" DEFAULT ")
        out.append(
            AuditColumn(
                name=target.columns[spec.logical],
                type=spec.type,
                not_null="NOT NULL" in spec.ddl or "PRIMARY KEY" in spec.ddl,
                default_expr=default or None,
                is_id="PRIMARY KEY" in spec.ddl,
            )
        )
    return out


def _audit_fields(ctx: StepContext, columns: list[AuditColumn]) -> list[tuple[Field, str, str]]:
    """Each column as a Prisma field, with its type and attributes as the line shows them."""
    logical = {physical: name for name, physical in audit_target(ctx).columns.items()}
    out = []
    for column in columns:
        name = logical.get(column.name) or _camel(column.name)
        prisma_type, native = _prisma_type(column)
        attrs = []
        if column.is_id:
            attrs.append("@id")
        if column.default_expr is not None:
            attrs.append(f"@default(dbgenerated({_prisma_string(column.default_expr)}))")
        if name != column.name:
            attrs.append(f"@map({_prisma_string(column.name)})")
        if native:
            attrs.append(native)
        optional = not column.not_null and not column.is_id
        field = Field(name=name, type=prisma_type, db_name=column.name, optional=optional)
        out.append((field, prisma_type + ("?" if optional else ""), " ".join(attrs)))
    return out


def audit_model(
    ctx: StepContext, table: str, shapes: Sequence[IndexShape], *, planned: bool = False
) -> str:
    """The ``AuditLog`` model block for the audit table, with its indexes' ``@@index``."""
    fields = _audit_fields(ctx, _audit_columns(ctx, table, planned))
    model = Model(AUDIT_MODEL, table, tuple(f for f, _, _ in fields))
    name_width = max(len(f.name) for f, _, _ in fields)
    type_width = max(len(text) for _, text, _ in fields)
    lines = [
        "/// The audit log of pgrunbook's audit step (runbook script 04): who did what to which",
        "/// object, with the old and new values. Written by `pgrunbook prisma sync`.",
        f"model {AUDIT_MODEL} {{",
    ]
    for f, type_text, attrs in fields:
        line = f"  {f.name.ljust(name_width)} {type_text.ljust(type_width)} {attrs}"
        lines.append(line.rstrip())
    block = []
    for shape in shapes:
        attr = index_attr(model, shape.columns, shape.name, shape.predicate, partial_allowed=False)
        if attr is not None:
            block.append(f"  {attr}")
    if table != AUDIT_MODEL:
        block.append(f"  @@map({_prisma_string(table)})")
    if block:
        lines += ["", *block]
    lines.append("}")
    return "\n".join(lines) + "\n"


def _comment(shape: IndexShape, why: str) -> str:
    return f"{COMMENT_PREFIX}{shape.name}: {why}"


def _reparse(schema: PrismaSchema, texts: dict[Path, str]) -> PrismaSchema:
    """``schema`` read again after edits (``texts``: the changed files)."""
    if not texts:
        return schema
    parts = [parse_text(texts.get(p, schema.texts[p]), p) for p in schema.files]
    datasource = next((p.datasource for p in parts if p.datasource is not None), None)
    return PrismaSchema(
        datasource=datasource,
        generators=tuple(g for p in parts for g in p.generators),
        enums=tuple(e for p in parts for e in p.enums),
        models=tuple(m for p in parts for m in p.models),
        files=schema.files,
        texts={path: text for p in parts for path, text in p.texts.items()},
    )


def _cut_comments(texts: dict[Path, str], names: Iterable[str]) -> dict[Path, str]:
    """``texts`` without the comment lines sync left for the indexes ``names``."""
    out = dict(texts)
    for name in names:
        for template in _COMMENT_LINES:
            pattern = re.compile(template.format(name=re.escape(name)), re.MULTILINE)
            out = {path: pattern.sub("", text) for path, text in out.items()}
    return out


def _schema_edits(
    ctx: StepContext,
    schema: PrismaSchema,
    work: _Work,
    planned: bool,
    warnings: list[str],
) -> dict[Path, str]:
    ctx.refresh()
    partial_ok = partial_indexes_allowed(schema)
    wanted = [op for op in work.applied if _is_index(op)]
    wanted_names = {op.ref.name for op in wanted if op.ref is not None}
    audit_op = next((op for op in work.applied if _is_audit_table(op)), None)
    gone = [op for op in work.rolled_back if _is_index(op) and op.ref is not None
            and op.ref.name not in wanted_names]  # fmt: skip
    gone_table = next((op for op in work.rolled_back if _is_audit_table(op)), None)
    # 1. take out what was rolled back
    drop_models = []
    if gone_table is not None and audit_op is None and gone_table.ref is not None:
        model = schema.model_for_table(gone_table.ref.name)
        if model is not None and model.name == AUDIT_MODEL:
            drop_models.append(model.name)
    gone_names = [op.ref.name for op in gone if op.ref is not None]
    texts = remove(schema, index_maps=gone_names, models=drop_models)
    texts = {p: t for p, t in _cut_comments({**schema.texts, **texts}, gone_names).items()
             if t != schema.texts.get(p)}  # fmt: skip
    current = _reparse(schema, texts)
    # 2. add what is in force
    audit_table = audit_op.ref.name if audit_op is not None and audit_op.ref else None
    new_model = audit_table is not None and current.model_for_table(audit_table) is None
    if new_model and current.model(AUDIT_MODEL) is not None:
        warnings.append(
            f"schema.prisma has a model {AUDIT_MODEL} for another table; the model of "
            f"{audit_table} is not added"
        )
        new_model = False
    indexes: list[tuple[str, str, str]] = []
    model_shapes: list[IndexShape] = []
    for op in wanted:
        assert op.ref is not None
        shape = _shape(ctx, op, work)
        if shape is None:
            warnings.append(f"{op.object}: not found, or on an expression; schema.prisma "
                            "not changed for it")  # fmt: skip
            continue
        if new_model and shape.table == audit_table:
            model_shapes.append(shape)
            continue
        model = current.model_for_table(shape.table)
        if model is None:
            warnings.append(f"{op.object}: table {shape.table} has no model in schema.prisma")
            continue
        attr = index_attr(model, shape.columns, shape.name, shape.predicate,
                          partial_allowed=partial_ok)  # fmt: skip
        if attr is None:
            attr = _comment(shape, _why_not(model, shape, partial_ok))
            if _comment(shape, "") in _model_text(current, model):
                continue  # said already (perhaps with the predicate spelled another way)
        indexes.append((model.name, shape.name, attr))
    models = []
    if new_model and audit_table is not None:
        models.append(audit_model(ctx, audit_table, model_shapes, planned=planned))
    added = add(current, indexes=indexes, models=models)
    final = {**texts, **added}
    return {p: t for p, t in final.items() if t != schema.texts.get(p)}


def _why_not(model: Model, shape: IndexShape, partial_ok: bool) -> str:
    fields = {f.db_name for f in model.fields if f.relation is None}
    missing = [c for c, _ in shape.columns if c not in fields]
    if missing:
        columns = ", ".join(missing)
        return f"on {columns}, which {model.name} has no field for: in the migration SQL only"
    assert not partial_ok
    return (
        f"partial (WHERE {' '.join((shape.predicate or '').split())}): in the migration SQL "
        'only; schema.prisma describes partial indexes with previewFeatures = ["partialIndexes"]'
    )


def _model_text(schema: PrismaSchema, model: Model) -> str:
    span = model.span
    if span is None or span.path is None:
        return ""
    return schema.texts.get(span.path, "")[span.start : span.end]


# --- the library call --------------------------------------------------------------------


def plan_sync(
    ctx: StepContext,
    schema: PrismaSchema,
    migrations_dir: Path,
    *,
    planned: bool = False,
    steps: Sequence[Step] = STEPS,
    now: datetime | None = None,
    schema_arg: str | None = None,
) -> SyncPlan:
    """What ``prisma sync`` would write for this database (reads only; ``write()`` writes)."""
    if not migrations_dir.is_dir():
        raise ConfigError(
            f"no Prisma migrations folder at {migrations_dir}",
            "create the first migration with prisma migrate dev, or pass --migrations DIR",
        )
    out = SyncPlan(migrations_dir, schema, planned, schema_arg=schema_arg)
    work = _Work()
    if planned:
        _planned_work(ctx, steps, work)
    else:
        _journal_work(ctx, steps, work, out.warnings)
    out.migrations = _migrations(ctx, work, migrations_dir, steps, now, out.warnings)
    out.schema_texts = _schema_edits(ctx, schema, work, planned, out.warnings)
    return out
