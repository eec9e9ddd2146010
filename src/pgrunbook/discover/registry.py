"""Every discovery check, in report order. Adding a check means adding it here."""

from __future__ import annotations

from typing import Any, Final

from pgrunbook.discover.check import Check
from pgrunbook.discover.checks import (
    bloat,
    cache_hit,
    connections,
    constraint_violations,
    database_size,
    dead_tuples,
    duplicate_indexes,
    invalid_indexes,
    missing_indexes,
    naming,
    orphans,
    prisma_relation_indexes,
    retention,
    seq_scans,
    sequences,
    statements,
    tables,
    unused_indexes,
    updated_at_triggers,
    wraparound,
)
from pgrunbook.errors import ConfigError

CHECKS: Final[tuple[Check[Any], ...]] = (
    naming.CHECK,
    tables.CHECK,
    dead_tuples.CHECK,
    invalid_indexes.CHECK,
    unused_indexes.CHECK,
    duplicate_indexes.CHECK,
    missing_indexes.CHECK,
    prisma_relation_indexes.CHECK,
    seq_scans.CHECK,
    orphans.CHECK,
    constraint_violations.CHECK,
    retention.CHECK,
    updated_at_triggers.CHECK,
    sequences.CHECK,
    wraparound.CHECK,
    cache_hit.CHECK,
    connections.CHECK,
    database_size.CHECK,
    bloat.CHECK,
    statements.CHECK,
)

BY_ID: Final[dict[str, Check[Any]]] = {check.id: check for check in CHECKS}


def select(only: tuple[str, ...] = (), skip: tuple[str, ...] = ()) -> list[Check[Any]]:
    """The checks to run; unknown ids are refused with the list of known ones."""
    for name in (*only, *skip):
        if name not in BY_ID:
            raise ConfigError(f"unknown check {name!r}", f"known checks: {', '.join(BY_ID)}")
    return [c for c in CHECKS if (not only or c.id in only) and c.id not in skip]
