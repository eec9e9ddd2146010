"""Naming convention of tables and columns: camelCase, snake_case or mixed, with the evidence.

The runbook says to note it before anything else (script 01): Prisma names tables
``RoomMember`` and columns ``updatedAt``, hand-written schemas ``room_members`` and
``updated_at``, and every later step has to spell new columns, triggers and lookups the
database's way. ``detect(catalog)`` classifies each name (``camel`` for camelCase and
PascalCase, ``snake``, ``neutral`` for a single lowercase word that fits both, ``other``)
and gives the verdict per kind of object; ``NamingConvention.column_name("updatedAt")``
answers how a new column should be spelled here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from pgrunbook.catalog import Catalog
from pgrunbook.discover.check import Check, CheckResult
from pgrunbook.discover.context import Context
from pgrunbook.findings import Finding, Severity
from pgrunbook.resolve import snake

Style = Literal["camel", "snake", "mixed", "unknown"]
Kind = Literal["camel", "snake", "neutral", "other"]
KINDS: Final[tuple[Kind, ...]] = ("camel", "snake", "neutral", "other")
EXAMPLES: Final = 5  # names kept per kind as evidence

# Bookkeeping tables of migration tools: their names say nothing about the app's convention
# (Prisma's own table is snake_case in a camelCase schema).
TOOL_TABLES: Final = frozenset(
    {
        "_prisma_migrations",
        "__drizzle_migrations",
        "__EFMigrationsHistory",
        "alembic_version",
        "ar_internal_metadata",
        "flyway_schema_history",
        "goose_db_version",
        "knex_migrations",
        "knex_migrations_lock",
        "schema_migrations",
        "SequelizeMeta",
        "spatial_ref_sys",
        "typeorm_metadata",
    }
)

_CAMEL: Final = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")
_SNAKE: Final = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)+$")
_WORD: Final = re.compile(r"^[a-z][a-z0-9]*$")
_CASELESS: Final = re.compile(r"^[A-Z0-9]+$")  # "A", "ID": no case to judge by


def classify(name: str) -> Kind:
    """``roomId``/``RoomMember`` camel, ``room_id`` snake, ``email``/``ID`` neutral."""
    bare = name.lstrip("_")  # Prisma's implicit m2m tables: _RoomToUser
    if _WORD.match(bare) or _CASELESS.match(bare):
        return "neutral"
    if _CAMEL.match(bare):
        return "camel"
    if _SNAKE.match(bare):
        return "snake"
    return "other"


def camel(name: str, *, pascal: bool = False) -> str:
    """``updated_at`` -> ``updatedAt`` (``UpdatedAt`` with pascal); camelCase kept as is."""
    parts = [p for p in name.split("_") if p]
    if not parts:
        return name
    head = parts[0][0].upper() + parts[0][1:] if pascal else parts[0][0].lower() + parts[0][1:]
    return head + "".join(p[0].upper() + p[1:] for p in parts[1:])


@dataclass(frozen=True)
class Evidence:
    """How the names of one kind of object are written, and the verdict."""

    style: Style
    counts: dict[Kind, int]
    examples: dict[Kind, tuple[str, ...]]

    def to_json(self) -> dict[str, Any]:
        return {
            "style": self.style,
            "counts": dict(self.counts),
            "examples": {k: list(v) for k, v in self.examples.items()},
        }


def judge(names: Iterable[str], max_minority_share: float = 0.1) -> Evidence:
    """The verdict over distinct ``names``: neutral words do not vote; a convention wins
    when the names that break it are at most ``max_minority_share`` of those that vote."""
    by_kind: dict[Kind, list[str]] = {k: [] for k in KINDS}
    for name in sorted(set(names)):
        by_kind[classify(name)].append(name)
    counts = {k: len(v) for k, v in by_kind.items()}
    voting = counts["camel"] + counts["snake"] + counts["other"]
    style: Style = "unknown"
    if voting:
        leader: Literal["camel", "snake"] = (
            "snake" if counts["snake"] > counts["camel"] else "camel"
        )
        style = leader if (voting - counts[leader]) / voting <= max_minority_share else "mixed"
    examples = {k: tuple(v[:EXAMPLES]) for k, v in by_kind.items() if v}
    return Evidence(style, counts, examples)


@dataclass(frozen=True)
class NamingConvention:
    """The schema's convention for tables and for columns."""

    tables: Evidence
    columns: Evidence
    ignored_tables: tuple[str, ...] = field(default=())

    @property
    def preferred(self) -> Literal["camel", "snake"]:
        """The spelling for new names: the columns' convention, else the tables', else the
        majority, else camelCase (the runbook's own, Prisma's)."""
        for evidence in (self.columns, self.tables):
            if evidence.style in ("camel", "snake"):
                return "snake" if evidence.style == "snake" else "camel"
        snakes = self.columns.counts["snake"] + self.tables.counts["snake"]
        camels = self.columns.counts["camel"] + self.tables.counts["camel"]
        return "snake" if snakes > camels else "camel"

    def column_name(self, logical: str) -> str:
        """How to spell the column ``logical`` here: ``updatedAt`` or ``updated_at``."""
        return snake(logical) if self.preferred == "snake" else camel(logical)

    def table_name(self, logical: str) -> str:
        """How to spell the table ``logical`` here: ``AuditLog`` or ``audit_log``."""
        style = self.tables.style if self.tables.style in ("camel", "snake") else self.preferred
        return snake(logical) if style == "snake" else camel(logical, pascal=True)

    def to_json(self) -> dict[str, Any]:
        return {
            "tables": self.tables.to_json(),
            "columns": self.columns.to_json(),
            "preferred": self.preferred,
            "ignored_tables": list(self.ignored_tables),
        }


def detect(catalog: Catalog, max_minority_share: float = 0.1) -> NamingConvention:
    """The naming convention of ``catalog``'s tables and columns (tool tables aside)."""
    tables = [t for t in catalog if t.name not in TOOL_TABLES and not t.is_partition]
    return NamingConvention(
        tables=judge((t.name for t in tables), max_minority_share),
        columns=judge((c.name for t in tables for c in t.columns), max_minority_share),
        ignored_tables=tuple(t.name for t in catalog if t.name in TOOL_TABLES),
    )


@dataclass(frozen=True)
class Thresholds:
    # A convention still wins when at most this share of the (non-neutral) names break it.
    max_minority_share: float = 0.1


_LABELS: Final = {
    "camel": "camelCase",
    "snake": "snake_case",
    "mixed": "mixed",
    "unknown": "unknown",
}


def _summary(what: str, evidence: Evidence) -> str:
    n = evidence.counts
    voting = n["camel"] + n["snake"] + n["other"]
    if evidence.style == "unknown":
        return f"{what} unknown (no name with case or underscores)"
    return (
        f"{what} {_LABELS[evidence.style]} ({n['camel']} camel, {n['snake']} snake, "
        f"{n['other']} other of {voting})"
    )


def run(ctx: Context, limits: Thresholds) -> CheckResult:
    convention = detect(ctx.catalog, limits.max_minority_share)
    message = (
        f"{_summary('tables', convention.tables)}; {_summary('columns', convention.columns)}; "
        f"new columns are spelled like {convention.column_name('updatedAt')}"
    )
    finding = Finding(
        check=CHECK.id,
        severity=Severity.INFO,
        object=f"schema {ctx.schema}",
        message=message,
        details=convention.to_json(),
    )
    return CheckResult([finding], convention.to_json())


CHECK = Check(
    id="naming", title="Naming convention of tables and columns", run=run, thresholds=Thresholds()
)
