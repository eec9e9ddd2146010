"""Which tables to vacuum and which btree indexes to rebuild, chosen from the catalog.

Tables: dead tuples over the ``dead_tuples`` check's threshold, never analyzed, the
runbook's high-traffic tables (Message, Notification, GiftSend), or named with ``--table``
(then only those). Indexes: btree indexes whose bloat estimate (the ``bloat`` check's) is
over its warning ratio, confirmed with ``pgstatindex`` when pgstattuple is installed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import psycopg
from psycopg import errors

from pgrunbook.catalog import Catalog, Table, load_catalog
from pgrunbook.discover.checks import bloat, dead_tuples
from pgrunbook.discover.checks.tables import dead_ratio
from pgrunbook.errors import ConfigError
from pgrunbook.locking import timeouts
from pgrunbook.resolve import find_table

HIGH_TRAFFIC: Final = ("Message", "Notification", "GiftSend")

PGSTATTUPLE_SQL: Final = """
SELECT n.nspname::text FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
 WHERE e.extname = 'pgstattuple'
"""


@dataclass(frozen=True)
class TableChoice:
    schema: str
    name: str
    oid: int
    reasons: tuple[str, ...]

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    def to_json(self) -> dict[str, Any]:
        return {"table": self.qualified, "reasons": list(self.reasons)}


@dataclass(frozen=True)
class IndexChoice:
    schema: str
    name: str
    table: str
    bytes: int
    ratio: float  # wasted share, measured when possible
    method: str  # "estimate" or "pgstatindex"

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def reason(self) -> str:
        return f"{self.ratio:.0%} bloat ({self.method})"

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.qualified,
            "table": self.table,
            "bytes": self.bytes,
            "bloat_ratio": self.ratio,
            "method": self.method,
        }


@dataclass(frozen=True)
class Choice:
    tables: list[TableChoice]
    indexes: list[IndexChoice]
    notes: list[str] = field(default_factory=list)  # candidates left out, and why


def _table_reasons(table: Table, limits: dead_tuples.Thresholds) -> list[str]:
    reasons = []
    ratio, dead = dead_ratio(table), table.n_dead_tup or 0
    if ratio is not None and ratio > limits.max_dead_ratio and dead >= limits.min_dead_tuples:
        reasons.append(
            f"{ratio:.1%} dead tuples ({dead:,}), over the {limits.max_dead_ratio:.0%} threshold"
        )
    if table.last_analyze is None and table.last_autoanalyze is None:
        reasons.append("never analyzed")
    return reasons


def _pgstattuple_schema(conn: psycopg.Connection[Any]) -> str | None:
    row = conn.execute(PGSTATTUPLE_SQL).fetchone()
    return str(row[0]) if row else None


def choose_indexes(
    conn: psycopg.Connection[Any],
    catalog: Catalog,
    tables: set[int] | None,
    limits: bloat.Thresholds,
    notes: list[str],
) -> list[IndexChoice]:
    """Btree indexes over ``limits.warn_ratio`` bloat (only on ``tables`` when given)."""
    found = [
        e
        for e in bloat.estimate(
            conn,
            catalog,
            min_bytes=limits.min_bytes,
            stale_analyze_ratio=limits.stale_analyze_ratio,
        )
        if e.index is not None and (tables is None or e.table.oid in tables)
    ]
    schema = _pgstattuple_schema(conn)
    out = []
    for e in found:
        assert e.index is not None
        if e.ratio < limits.warn_ratio:
            continue
        if e.index.constraint_type == "x":
            notes.append(f"{e.object}: exclusion-constraint indexes cannot be rebuilt concurrently")
            continue
        ratio, method = e.ratio, "estimate"
        if schema is not None:
            try:
                with timeouts(
                    conn, lock_timeout_ms=1_000, statement_timeout_ms=limits.measure_timeout_ms
                ):
                    measured = bloat.measure(conn, e, schema)
            except (errors.InsufficientPrivilege, errors.LockNotAvailable, errors.QueryCanceled):
                notes.append(f"{e.object}: could not be measured with pgstatindex")
            else:
                ratio, method = measured.ratio, measured.method
        elif e.confidence == "low":
            notes.append(f"{e.object}: estimate of low confidence ({e.confidence_note}), skipped")
            continue
        if ratio < limits.warn_ratio:
            notes.append(f"{e.object}: estimated {e.ratio:.0%}, measured {ratio:.0%}: left alone")
            continue
        out.append(
            IndexChoice(
                e.index.schema, e.index.name, e.table.qualified, e.actual_bytes, ratio, method
            )
        )
    return sorted(out, key=lambda i: i.qualified)


def choose(
    conn: psycopg.Connection[Any],
    schema: str,
    tables: Sequence[str] = (),
    *,
    dead_limits: dead_tuples.Thresholds | None = None,
    bloat_limits: bloat.Thresholds | None = None,
) -> Choice:
    """What ``maintain`` would do on ``schema``, and why. Reads the catalog only.

    ``tables`` (logical names, either naming) restricts the work to those tables; an
    unknown name raises ConfigError.
    """
    dead_limits = dead_limits or dead_tuples.Thresholds()
    bloat_limits = bloat_limits or bloat.Thresholds()
    catalog = load_catalog(conn, schema)
    notes: list[str] = []
    chosen: dict[int, list[str]] = {}
    if tables:
        for name in tables:
            table = find_table(catalog, name)
            if table is None:
                raise ConfigError(f"no table {name!r} in schema {schema!r}", "check --table")
            chosen.setdefault(table.oid, []).append("named with --table")
    else:
        for table in catalog:
            if table.kind != "r":
                continue
            reasons = _table_reasons(table, dead_limits)
            if reasons:
                chosen.setdefault(table.oid, []).extend(reasons)
        for logical in HIGH_TRAFFIC:
            found = find_table(catalog, logical)
            if found is not None:
                chosen.setdefault(found.oid, []).append("high-traffic table (runbook)")
    picked = [
        TableChoice(t.schema, t.name, t.oid, tuple(chosen[t.oid]))
        for t in catalog
        if t.oid in chosen
    ]
    indexes = choose_indexes(conn, catalog, set(chosen) if tables else None, bloat_limits, notes)
    return Choice(sorted(picked, key=lambda t: t.qualified), indexes, notes)
