"""The profile's indexes for this database, and what the catalog already holds of them.

One place turns an ``IndexSpec`` into the statements that build and drop it (``plan``,
``verify`` and ``export`` all use it), and compares it with the indexes that exist: one of
the same name, or an equivalent one under another name (same key columns, order and
predicate, default operator classes and collations).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

import psycopg
from psycopg import sql

from pgrunbook.catalog import INDOPTION_DESC, INDOPTION_NULLS_FIRST, Index, Table
from pgrunbook.change.lockmodes import LockMode
from pgrunbook.change.operation import Operation
from pgrunbook.change.refs import ObjectRef, RefKind
from pgrunbook.change.step import Skip, StepContext
from pgrunbook.indexsql import Build, current_builds, drop_concurrently
from pgrunbook.profile.model import IndexSpec, RenderedIndex
from pgrunbook.resolve import find_column

ID: Final = "indexes"

# The runbook's section 5 checks that the room-history query uses this index by name, so it
# is built even when an equivalent index exists under another name (the planner picks the
# newer of two equal indexes).
ROOM_HISTORY_INDEX: Final = "idx_message_room_created_desc"

LOCK: Final = LockMode.SHARE_UPDATE_EXCLUSIVE  # CONCURRENTLY: reads and writes go on

# Which of these indexes use the default operator class and the column's own collation for
# every key column (what a plain CREATE INDEX gives): only those are our index's equals.
PLAIN_KEYS_SQL: Final = """
SELECT i.indexrelid::int8 AS oid
  FROM pg_index i
 WHERE i.indexrelid = ANY(%(oids)s::oid[])
   AND NOT EXISTS (
       SELECT 1
         FROM unnest(i.indkey::int2[], i.indclass::oid[], i.indcollation::oid[])
              AS k(attnum, opclass, coll)
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
         LEFT JOIN pg_opclass o ON o.oid = k.opclass
        WHERE k.opclass IS NOT NULL
          AND (o.oid IS NULL OR NOT o.opcdefault OR k.coll <> a.attcollation))
"""

# ``::"ReportStatus"``, ``::text``, ``::timestamp without time zone``, ``::varchar(20)[]``
_CAST: Final = re.compile(
    r'::(?:"(?:[^"]|"")+"|[A-Za-z_][\w$]*)(?:\.(?:"(?:[^"]|"")+"|[A-Za-z_][\w$]*))?'
    r"(?:\s+(?:without|with|time|zone|varying|precision))*(?:\(\d+(?:,\s*\d+)?\))?(?:\[\])*"
)


def normalize_predicate(text: str | None) -> str | None:
    """A predicate as text that ignores how it was written: identifier quotes, casts the
    server adds to literals (``'PENDING'::"ReportStatus"``), spacing, outer parentheses."""
    if text is None:
        return None
    out = " ".join(_CAST.sub("", text).replace('"', "").split())
    while out.startswith("(") and out.endswith(")") and _balanced(out[1:-1]):
        out = out[1:-1].strip()
    return out


def _balanced(text: str) -> bool:
    depth = 0
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            return False
    return depth == 0


@dataclass(frozen=True)
class Wanted:
    """A profile index that this database's table and columns can have."""

    spec: IndexSpec
    table: Table
    rendered: RenderedIndex
    attnums: tuple[int, ...]  # the key columns
    options: tuple[int, ...]  # pg_index.indoption of each key column

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def schema(self) -> str:
        return self.table.schema

    @property
    def object(self) -> str:
        return f"index {self.schema}.{self.name}"

    @property
    def predicate(self) -> str | None:
        return None if self.rendered.predicate is None else self.rendered.predicate.as_string()

    def create(self) -> sql.Composed:
        statement = sql.SQL("CREATE INDEX CONCURRENTLY IF NOT EXISTS {} ON {} {}").format(
            sql.Identifier(self.name),
            sql.Identifier(self.table.schema, self.table.name),
            self.rendered.columns,
        )
        if self.rendered.predicate is not None:
            statement += sql.SQL(" WHERE {}").format(self.rendered.predicate)
        return statement

    def drop(self) -> sql.Composed:
        return drop_concurrently(self.schema, self.name)

    @property
    def create_sql(self) -> str:
        return self.create().as_string()

    @property
    def drop_sql(self) -> str:
        return self.drop().as_string()

    def same_shape(self, index: Index) -> bool:
        """Whether ``index`` has our key columns, order and predicate (and nothing more)."""
        keys = index.key_count
        return (
            index.method == "btree"
            and index.table_oid == self.table.oid
            and len(index.attnums) == keys  # no INCLUDE columns
            and tuple(index.attnums[:keys]) == self.attnums
            and tuple(index.options[:keys]) == self.options
            and normalize_predicate(index.predicate) == normalize_predicate(self.predicate)
        )

    def create_op(self) -> Operation:
        drop = self.drop_sql
        return Operation(
            step=ID,
            object=self.object,
            sql=self.create_sql,
            reverse_sql=drop,
            transactional=False,
            lock_mode=LOCK,
            table=(self.table.schema, self.table.name),
            why=self.spec.serves or f"the profile's index {self.name}",
            # a failed concurrent build leaves an INVALID index behind
            cleanup_sql=drop,
            ref=ObjectRef(RefKind.INDEX, self.name, self.schema),
            creates=True,
        )

    def drop_invalid_op(self, invalid: Index) -> Operation:
        return Operation(
            step=ID,
            object=f"invalid index {self.schema}.{self.name}",
            sql=self.drop_sql,
            reverse_sql=None,
            transactional=False,
            lock_mode=LOCK,
            table=(self.table.schema, self.table.name),
            why=(
                "an INVALID index left by a failed or cancelled build serves no query (the "
                "planner ignores it) yet every write maintains it; dropped to rebuild it, "
                f"nothing to restore (it was: {invalid.definition})"
            ),
        )


def want(spec: IndexSpec, table: Table) -> Wanted | str:
    """``spec`` for ``table``'s real names, or why this table cannot have it."""
    rendered = spec.render(table)
    if isinstance(rendered, str):
        return rendered
    attnums, options = [], []
    for col in spec.columns:
        column = find_column(table, col.name)
        assert column is not None  # render found it
        attnums.append(column.num)
        options.append(INDOPTION_DESC | INDOPTION_NULLS_FIRST if col.descending else 0)
    return Wanted(spec, table, rendered, tuple(attnums), tuple(options))


@dataclass(frozen=True)
class Found:
    """A wanted index and what the database holds of it now."""

    wanted: Wanted
    existing: Index | None  # the index of that name in the schema, valid or not
    as_wanted: bool  # ``existing`` is the index we would build (columns, order, predicate)
    twin: Index | None  # a valid equivalent index under another name
    build: Build | None  # the build in progress that is making ``existing``

    @property
    def present(self) -> bool:
        return self.existing is not None and self.existing.valid and self.existing.ready

    @property
    def served_by_twin(self) -> bool:
        """Ours is missing and an equivalent index serves its queries: it is not built
        (a duplicate only slows writes), except the one the runbook's EXPLAIN check names."""
        if self.existing is not None or self.twin is None:
            return False
        return self.wanted.name != ROOM_HISTORY_INDEX


def skip_object(schema: str, spec: IndexSpec) -> str:
    return f"index {schema}.{spec.name}"


def survey(ctx: StepContext) -> list[Found | Skip]:
    """Each profile index, in the profile's order: what exists of it, or why it is skipped
    (its table or a column is missing). Reads the catalog only."""
    entries: list[Wanted | Skip] = []
    for spec in ctx.profile.indexes:
        table = ctx.table(spec.table)
        if table is None:
            reason = f"table {spec.table!r} not found in schema {ctx.schema!r}"
            entries.append(Skip(skip_object(ctx.schema, spec), reason))
            continue
        wanted = want(spec, table)
        if isinstance(wanted, str):
            entries.append(Skip(skip_object(ctx.schema, spec), wanted))
        else:
            entries.append(wanted)
    wanted_list = [e for e in entries if isinstance(e, Wanted)]
    by_name = {index.name: index for index in ctx.catalog.indexes()}
    candidates = {
        index.oid for w in wanted_list for index in w.table.indexes if w.same_shape(index)
    }
    plain = plain_keys(ctx.conn, candidates)
    builds = current_builds(ctx.conn)
    out: list[Found | Skip] = []
    for entry in entries:
        if isinstance(entry, Skip):
            out.append(entry)
            continue
        existing = by_name.get(entry.name)
        out.append(
            Found(
                wanted=entry,
                existing=existing,
                as_wanted=existing is not None
                and not existing.is_unique
                and existing.oid in plain
                and entry.same_shape(existing),
                twin=_twin(entry, plain),
                build=None if existing is None or existing.valid else _build_of(existing, builds),
            )
        )
    return out


def _twin(wanted: Wanted, plain: set[int]) -> Index | None:
    twins = sorted(
        (
            index
            for index in wanted.table.indexes
            if index.name != wanted.name
            and index.valid
            and index.ready
            and index.oid in plain
            and wanted.same_shape(index)
        ),
        key=lambda index: index.name,
    )
    return twins[0] if twins else None


def _build_of(index: Index, builds: Iterable[Build]) -> Build | None:
    return next((b for b in builds if b.builds(index)), None)


def plain_keys(conn: psycopg.Connection[Any], oids: set[int]) -> set[int]:
    """The indexes among ``oids`` whose keys use default operator classes and collations."""
    if not oids:
        return set()
    rows = conn.execute(PLAIN_KEYS_SQL, {"oids": sorted(oids)}).fetchall()
    return {int(row[0]) for row in rows}
