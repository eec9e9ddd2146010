"""Finding a logical name (``Wallet``, ``currentMembers``) among the names a database uses.

The runbook names tables and columns the Prisma way; a snake_case database calls them
``wallets`` and ``current_members``. Matching ignores case and underscores and accepts the
common plural forms, so ``Wallet`` finds ``Wallet``, ``wallet`` or ``wallets``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final, TypeVar

from pgrunbook.catalog import Catalog, Column, Table

N = TypeVar("N", Table, Column)

_CAMEL_BOUNDARY: Final = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def squash(name: str) -> str:
    """``currentMembers``, ``current_members`` and ``CurrentMembers`` all become one key."""
    return name.replace("_", "").lower()


def snake(name: str) -> str:
    """``roomId`` -> ``room_id``, ``HTTPServer`` -> ``http_server``."""
    return _CAMEL_BOUNDARY.sub("_", name).lower()


def plural_forms(word: str) -> tuple[str, ...]:
    """The word itself and its regular English plurals (room -> rooms, reply -> replies)."""
    forms = [word, word + "s", word + "es"]
    if word.endswith("y") and len(word) > 1 and word[-2] not in "aeiou":
        forms.append(word[:-1] + "ies")
    return tuple(forms)


def _pick(candidates: Iterable[N], logical: str, allow_plural: bool) -> N | None:
    items = list(candidates)
    for item in items:  # an exact match wins
        if item.name == logical:
            return item
    wanted = plural_forms(squash(logical)) if allow_plural else (squash(logical),)
    for form in wanted:  # then the closest form: singular before plural
        matches = [item for item in items if squash(item.name) == form]
        if len(matches) == 1:
            return matches[0]
    return None


def find_table(catalog: Catalog, logical: str) -> Table | None:
    """The table called ``logical`` in this database's naming, or None (also if ambiguous)."""
    return _pick(catalog.tables, logical, allow_plural=True)


def find_column(table: Table, logical: str) -> Column | None:
    """The column called ``logical`` in this table's naming, or None."""
    return _pick(table.columns, logical, allow_plural=False)
