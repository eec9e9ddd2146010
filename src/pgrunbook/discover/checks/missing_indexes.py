"""Relations without an index on the referencing columns.

PostgreSQL indexes the referenced side of a foreign key (its key) but not the referencing
columns. Without an index leading with them, every DELETE or key UPDATE on the parent
scans the child table under lock, and every join or lookup by them (``WHERE "roomId" =
$1``) reads the whole table. The same holds for relations with no foreign key at all:
those ``schema.prisma`` declares (Prisma mode), else those inferred from ``roomId`` /
``room_id`` columns (see ``pgrunbook.relations``).

A valid, non-partial btree index whose first n key columns are the relation's n columns,
in any order, covers it (a hash index covers a single column); expression and partial
indexes do not.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final

from psycopg import sql

from pgrunbook.catalog import Catalog, Index, Table
from pgrunbook.discover.check import Check, CheckResult
from pgrunbook.discover.context import Context
from pgrunbook.findings import Finding, Severity
from pgrunbook.relations import Relation

NAMEDATALEN: Final = 64  # PostgreSQL truncates identifiers to 63 bytes


@dataclass(frozen=True)
class Thresholds:
    # Child tables with fewer rows (estimate or live tuples) get info, not a warning.
    min_rows: int = 1000


def covers(index: Index, attnums: set[int]) -> bool:
    n = len(attnums)
    if not index.valid or index.predicate is not None or n > index.key_count:
        return False
    if index.method == "hash" and n == 1:
        return set(index.attnums[:1]) == attnums
    return index.method == "btree" and set(index.attnums[:n]) == attnums


def _attnums(relation: Relation) -> set[int] | None:
    columns = [relation.child.column(name) for name in relation.columns]
    if not columns or any(c is None for c in columns):
        return None
    return {c.num for c in columns if c is not None}


def _fit(base: str, suffix: str) -> str:
    """``base + suffix`` within 63 bytes; a shortened base gets a hash to stay distinct."""
    name = base + suffix
    if len(name.encode()) < NAMEDATALEN:
        return name
    digest = "_" + hashlib.sha1(base.encode()).hexdigest()[:8]
    room = NAMEDATALEN - 1 - len((digest + suffix).encode())
    short = base.encode()[:room].decode(errors="ignore")
    return short + digest + suffix


def index_name(table: Table, columns: tuple[str, ...], taken: set[str]) -> str:
    """``<table>_<col>..._idx`` in the table's own spelling: Prisma's ``Message_senderId_idx``
    for its tables, ``messages_sender_id_idx`` for snake_case ones; never a name in use."""
    base = "_".join((table.name, *columns))
    name, n = _fit(base, "_idx"), 1
    while name in taken:
        name, n = _fit(base, f"_idx{n}"), n + 1
    return name


def _create(table: Table, name: str, columns: tuple[str, ...]) -> str:
    return (
        sql.SQL("CREATE INDEX CONCURRENTLY IF NOT EXISTS {} ON {} ({});")
        .format(
            sql.Identifier(name),
            sql.Identifier(table.schema, table.name),
            sql.SQL(", ").join(sql.Identifier(c) for c in columns),
        )
        .as_string()
    )


def _message(relation: Relation, rows: int) -> str:
    cols = ", ".join(relation.columns)
    if relation.constraint is not None:
        what = f"foreign key {relation.constraint.name} ({cols}) -> {relation.parent_name}"
        cost = "deleting or updating a parent row scans this table, and joins on it cannot "
    else:
        how = "declared in schema.prisma" if relation.source == "prisma" else "inferred"
        what = f"{cols} refers to {relation.parent_name} ({how}: no foreign key)"
        cost = "lookups and joins by it cannot "
    return f"{what} has no index leading with it ({rows:,} rows): {cost}use an index"


def findings(catalog: Catalog, relations: list[Relation], limits: Thresholds) -> list[Finding]:
    taken = {t.name for t in catalog} | {i.name for i in catalog.indexes()}
    out = []
    for relation in relations:
        child = relation.child
        attnums = _attnums(relation)
        if attnums is None or child.is_partition:  # partitions share their parent's verdict
            continue
        if any(covers(index, attnums) for index in child.indexes):
            continue
        rows = max(child.estimated_rows, child.n_live_tup or 0)
        name = index_name(child, relation.columns, taken)
        taken.add(name)
        partitioned = child.kind == "p"
        out.append(
            Finding(
                check=CHECK.id,
                severity=Severity.WARNING if rows >= limits.min_rows else Severity.INFO,
                object=child.qualified,
                message=_message(relation, rows)
                + ("; create it on each partition, then on the parent" if partitioned else ""),
                details={
                    "columns": list(relation.columns),
                    "parent": relation.parent_name,
                    "parent_columns": list(relation.parent_columns),
                    "source": relation.source,
                    "constraint": relation.constraint.name if relation.constraint else None,
                    "estimated_rows": rows,
                    "index_name": name,
                },
                # CONCURRENTLY is not possible on a partitioned table
                fix=None if partitioned else _create(child, name, relation.columns),
            )
        )
    return out


def run(ctx: Context, limits: Thresholds) -> CheckResult:
    return CheckResult(findings(ctx.catalog, ctx.relations, limits))


CHECK = Check(
    id="missing_indexes",
    title="Foreign keys and inferred or declared relations without an index",
    run=run,
    thresholds=Thresholds(),
)
