"""When two indexes are the same index: the shape discovery and the doctor compare.

Two indexes serve the same scans when their access method, key columns or expressions,
operator classes, collations, sort orders, INCLUDE columns and predicate agree.
"""

from __future__ import annotations

from collections.abc import Hashable

from pgrunbook.catalog import Index, Table


def key_shape(index: Index, n: int) -> tuple[Hashable, ...]:
    """What makes the first ``n`` key columns of an index the same as another's."""
    return tuple(
        zip(
            index.key_defs[:n],
            index.opclasses[:n],
            index.collations[:n],
            index.options[:n],
            strict=True,
        )
    )


def signature(index: Index) -> tuple[Hashable, ...]:
    """Equal for indexes that serve the same scans (uniqueness aside: the keeper keeps it)."""
    return (
        index.method,
        key_shape(index, index.key_count),
        tuple(sorted(index.include_defs)),
        index.predicate,
        # a UNIQUE NULLS NOT DISTINCT index enforces more than a plain unique one
        index.is_unique and " NULLS NOT DISTINCT" in index.definition,
    )


def valid_twin(index: Index, table: Table) -> Index | None:
    """A valid index identical to this one: what a failed REINDEX CONCURRENTLY leaves
    (``<name>_ccnew``) next to the original. Recreating would only make a duplicate."""
    wanted = signature(index)
    return next(
        (
            i
            for i in table.indexes
            if i.valid and i.is_unique == index.is_unique and signature(i) == wanted
        ),
        None,
    )
