"""Duplicate and redundant indexes: the same index twice, or a btree prefix of another.

Two indexes with the same table, access method, key columns or expressions, operator
classes, collations, sort orders, INCLUDE columns and predicate serve the same queries; a
non-unique btree index whose key columns lead another btree index (same opclasses, sort
orders and predicate) is served by the longer one. Either way the extra one only costs
writes and storage. An index that enforces something (a primary key, a unique or exclusion
constraint, or uniqueness on its own) is never the one proposed for dropping, and a unique
index is never "redundant" with a longer one: it enforces what the longer one does not.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable
from typing import Any, Literal

from pgrunbook.catalog import Index, Table
from pgrunbook.discover.check import Check, CheckResult, NoThresholds
from pgrunbook.discover.context import Context
from pgrunbook.findings import Finding, Severity
from pgrunbook.indexshape import key_shape, signature
from pgrunbook.indexsql import drop_sql, recreate_sql

Kind = Literal["duplicate", "prefix"]


def conventional_name(index: Index) -> bool:
    """The name PostgreSQL or Prisma gives such an index (``Message_roomId_idx``).

    Between two identical indexes, the one with the generated name is the one the app's
    migrations know; a ``_legacy``, ``_old`` or ``_copy`` twin is the one to drop.
    """
    columns = [d.strip('"') for d in index.key_defs]
    stem = "_".join([index.table, *columns])
    return index.name in (f"{stem}_idx", f"{stem}_key", f"{index.table}_pkey")


def _keep_order(index: Index) -> tuple[int, int, int, int, int, int]:
    """Sorts the index to keep first: enforcing, conventionally named, most scanned, oldest.

    The name comes before the scans: the planner picks one of two identical indexes
    arbitrarily, so their scan counts say nothing about which the app relies on.
    """
    return (
        0 if index.backs_constraint else 1,
        0 if index.is_primary else 1,
        0 if index.is_unique else 1,
        0 if conventional_name(index) else 1,
        -(index.idx_scan or 0),
        index.oid,
    )


def _prefix_of(short: Index, long: Index) -> bool:
    """``short``'s key columns lead ``long``'s: every scan of ``short`` can use ``long``."""
    n = short.key_count
    return (
        short.method == long.method == "btree"
        and n < long.key_count
        and not short.is_unique
        and not short.backs_constraint
        and short.predicate == long.predicate
        and key_shape(short, n) == key_shape(long, n)
        and set(short.include_defs) <= set(long.column_defs)  # index-only scans still work
    )


def _finding(kind: Kind, drop: Index, keep: Index, table: Table) -> Finding:
    both_enforce = drop.backs_constraint  # then so does keep: it sorts first
    partitioned = table.kind == "p"  # no CONCURRENTLY on a partitioned index
    details: dict[str, Any] = {
        "kind": kind,
        "keep": {"name": keep.qualified, "definition": keep.definition},
        "definition": drop.definition,
        "drop_sql": None if both_enforce or partitioned else drop_sql(drop),
        "recreate_sql": None if partitioned else recreate_sql(drop),
        "bytes": drop.bytes,
        "idx_scan": drop.idx_scan,
    }
    if both_enforce:
        return Finding(
            check=CHECK.id,
            severity=Severity.INFO,
            object=drop.qualified,
            message=f"duplicate of {keep.name}, but both back a constraint "
            f"({drop.constraint_name}, {keep.constraint_name}): dropping the index means "
            "dropping its constraint; decide by hand",
            details=details,
            fix=None,
        )
    what = "exact duplicate of" if kind == "duplicate" else "redundant: its columns lead"
    how = (
        "drop it with DROP INDEX at a quiet time (a partitioned index cannot be dropped "
        "concurrently; it locks the table)"
        if partitioned
        else "drop it (details hold the statement that recreates it)"
    )
    return Finding(
        check=CHECK.id,
        severity=Severity.WARNING,
        object=drop.qualified,
        message=f"{what} {keep.name}, which serves the same queries: it only costs writes "
        f"and {drop.bytes:,} bytes; {how}",
        details=details,
        fix=None if partitioned else drop_sql(drop),
    )


def table_findings(table: Table) -> list[Finding]:
    if table.is_partition:  # its indexes usually belong to its parent's: judged there
        return []
    indexes = [i for i in table.indexes if i.valid]
    groups: dict[tuple[Hashable, ...], list[Index]] = defaultdict(list)
    for index in indexes:
        groups[signature(index)].append(index)
    out, dropped = [], set()
    for group in groups.values():
        keep, *others = sorted(group, key=_keep_order)
        for index in others:
            dropped.add(index.oid)
            out.append(_finding("duplicate", index, keep, table))
    survivors = [i for i in indexes if i.oid not in dropped]
    redundant = {s.oid for s in survivors if any(_prefix_of(s, i) for i in survivors)}
    for short in survivors:
        if short.oid not in redundant:
            continue
        # the shortest longer index that stays (prefixes chain: (a) < (a, b) < (a, b, c))
        longer = [i for i in survivors if i.oid not in redundant and _prefix_of(short, i)]
        keep = min(longer, key=lambda i: (i.key_count, *_keep_order(i)))
        out.append(_finding("prefix", short, keep, table))
    return out


def run(ctx: Context, limits: NoThresholds) -> CheckResult:
    findings: list[Finding] = []
    for table in ctx.catalog:
        findings.extend(table_findings(table))
    return CheckResult(findings)


CHECK = Check(
    id="duplicate_indexes",
    title="Duplicate and redundant indexes",
    run=run,
    thresholds=NoThresholds(),
)
