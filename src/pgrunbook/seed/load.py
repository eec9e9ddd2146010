"""Load the reference schema and synthetic data into a database.

Everything up to the data and its keys runs in one transaction, so a failed seed leaves
nothing behind. Tables are created bare, filled with COPY, then given their keys, indexes and
foreign keys (as pg_restore does). Afterwards each table is vacuumed and analyzed, and 15% of
the wallets are updated to leave the dead tuples the runbook's checks look for.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import psycopg
from psycopg import sql

from pgrunbook.connect import connect
from pgrunbook.dsn import ConnInfo
from pgrunbook.errors import ConfigError, TargetNotEmptyError
from pgrunbook.reference.model import ALI_SCHEMA
from pgrunbook.reference.naming import Naming
from pgrunbook.reference.render_sql import load_statements
from pgrunbook.seed.anomalies import count_anomalies
from pgrunbook.seed.generate import TABLE_ORDER, Generator, Row, anchor_now
from pgrunbook.seed.scales import SCALES

Progress = Callable[[str, int, int], None]  # (table, rows done, rows expected)
COPY_BATCH: Final = 20_000
CHURN_TABLE: Final = "Wallet"

_EXISTING_TABLES: Final = sql.SQL(
    "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'f') "
    # an extension's own views (pg_stat_statements in public) are not the app's tables
    "AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass "
    "AND d.objid = c.oid AND d.deptype = 'e') ORDER BY 1"
)


@dataclass
class SeedReport:
    """What the seed did: rows per table, injected defects, and how long it took."""

    scale: str
    seed: int
    naming: str
    schema: str
    anchor: datetime
    rows: dict[str, int] = field(default_factory=dict)
    anomalies: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())

    @property
    def load_rows_per_second(self) -> float:
        return self.total_rows / max(self.seconds.get("copy", 0.0), 1e-9)

    @property
    def overall_rows_per_second(self) -> float:
        return self.total_rows / max(self.seconds.get("total", 0.0), 1e-9)

    def to_json(self) -> dict[str, Any]:
        return {
            "scale": self.scale,
            "seed": self.seed,
            "naming": self.naming,
            "schema": self.schema,
            "anchor": self.anchor.isoformat(),
            "rows": self.rows,
            "total_rows": self.total_rows,
            "anomalies": self.anomalies,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "load_rows_per_second": round(self.load_rows_per_second),
            "overall_rows_per_second": round(self.overall_rows_per_second),
        }


def expected_rows(scale: str) -> dict[str, int]:
    """Rough row counts per table, for progress bars."""
    s = SCALES[scale]
    return {
        "User": s.users, "Room": s.rooms, "RoomMember": s.rooms * 15, "Message": s.messages,
        "Gift": 40, "GiftSend": s.gift_sends, "Wallet": s.users,
        "WalletTransaction": s.gift_sends * 2 + s.users * 2, "Follow": s.follows,
        "Notification": s.notifications, "Report": s.reports, "RefreshToken": s.refresh_tokens,
    }  # fmt: skip


def existing_tables(conn: psycopg.Connection[Any], schema: str) -> list[str]:
    return [str(r[0]) for r in conn.execute(_EXISTING_TABLES, (schema,)).fetchall()]


def ensure_empty(conn: psycopg.Connection[Any], info: ConnInfo, force: bool) -> list[str]:
    """The tables in the target schema; raise TargetNotEmptyError if any and not ``force``."""
    present = existing_tables(conn, info.schema)
    if present and not force:
        shown = ", ".join(present[:5]) + (" ..." if len(present) > 5 else "")
        raise TargetNotEmptyError(
            f"schema {info.schema!r} of database {info.dbname!r} already holds "
            f"{len(present)} table(s) ({shown})",
            "seed an empty database, or pass --force to drop the reference tables first",
        )
    return present


def drop_reference_objects(conn: psycopg.Connection[Any], naming: Naming) -> None:
    """Drop the reference tables and types (only those), for ``seed --force``."""
    for table in reversed(ALI_SCHEMA.tables):
        conn.execute(
            sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(
                sql.Identifier(naming.table(table.name))
            )
        )
    for enum in ALI_SCHEMA.enums:
        conn.execute(
            sql.SQL("DROP TYPE IF EXISTS {} CASCADE").format(
                sql.Identifier(naming.enum_type(enum.name))
            )
        )


def _copy_table(
    conn: psycopg.Connection[Any],
    naming: Naming,
    table: str,
    rows: Iterator[Row],
    progress: Progress | None,
    expected: int,
) -> int:
    statement = _copy_statement(naming, table)
    count = 0
    batch: list[str] = []
    with conn.cursor().copy(statement) as copy:
        for row in rows:
            batch.append("\t".join(row))
            if len(batch) >= COPY_BATCH:
                copy.write("\n".join(batch) + "\n")
                count += len(batch)
                batch.clear()
                if progress:
                    progress(table, count, expected)
        if batch:
            copy.write("\n".join(batch) + "\n")
            count += len(batch)
    if progress:
        progress(table, count, count)
    return count


def _copy_statement(naming: Naming, table: str) -> sql.Composed:
    columns = ALI_SCHEMA.table(table).column_names
    return sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(naming.table(table)),
        sql.SQL(", ").join(sql.Identifier(naming.column(c)) for c in columns),
    )


def _use_schema(conn: psycopg.Connection[Any], schema: str) -> None:
    conn.execute(
        "SELECT set_config('search_path', %s, false)", (sql.Identifier(schema).as_string(),)
    )


def seed(
    info: ConnInfo,
    *,
    scale: str = "small",
    naming: Naming | str = Naming.PRISMA,
    seed: int = 42,
    anchor: datetime | None = None,
    force: bool = False,
    progress: Progress | None = None,
) -> SeedReport:
    """Create the reference schema in ``info``'s database and fill it with synthetic data.

    Refuses a schema that already holds tables unless ``force`` (which drops the reference
    tables and types first, and nothing else).
    """
    if scale not in SCALES:
        raise ConfigError(f"unknown scale {scale!r}", f"use one of {', '.join(SCALES)}")
    naming = Naming(naming)
    anchor = anchor or anchor_now()
    report = SeedReport(scale, seed, naming.value, info.schema, anchor)
    started = time.perf_counter()
    generator = Generator(SCALES[scale], seed, anchor)
    expected = expected_rows(scale)
    statements = load_statements(ALI_SCHEMA, naming)

    with connect(info) as conn:
        _use_schema(conn, info.schema)
        with conn.transaction():
            conn.execute(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(info.schema))
            )
            present = ensure_empty(conn, info, force)
            if present:
                drop_reference_objects(conn, naming)
            for statement in statements.pre_data:
                conn.execute(statement)
            t0 = time.perf_counter()
            for table, method in TABLE_ORDER:
                rows = getattr(generator, method)()
                report.rows[table] = _copy_table(
                    conn, naming, table, rows, progress, expected[table]
                )
            report.seconds["copy"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            for statement in statements.post_data:
                conn.execute(statement)
            report.seconds["keys_and_indexes"] = time.perf_counter() - t0

    with connect(info, autocommit=True) as conn:
        _use_schema(conn, info.schema)
        t0 = time.perf_counter()
        for model in ALI_SCHEMA.tables:
            conn.execute(
                sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier(naming.table(model.name)))
            )
        report.seconds["vacuum_analyze"] = time.perf_counter() - t0
        churned = generator.wallets_to_churn()
        conn.execute(
            sql.SQL(
                "UPDATE {t} SET {u} = {u} + interval '1 second' WHERE {id} = ANY(%s::uuid[])"
            ).format(
                t=sql.Identifier(naming.table(CHURN_TABLE)),
                u=sql.Identifier(naming.column("updatedAt")),
                id=sql.Identifier("id"),
            ),
            (churned,),
        )
        conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(naming.table(CHURN_TABLE))))
        report.anomalies = _manifest(generator, naming, len(churned))
    report.seconds["total"] = time.perf_counter() - started
    return report


def _manifest(generator: Generator, naming: Naming, churned: int) -> dict[str, Any]:
    manifest: dict[str, Any] = dict(sorted(generator.tally.anomalies.items()))
    indexes: dict[str, list[str]] = {"duplicate_indexes": [], "unused_indexes": []}
    for table in ALI_SCHEMA.tables:
        for index in table.indexes:
            if index.anomaly:
                key = "duplicate_indexes" if "duplicate" in index.anomaly else "unused_indexes"
                indexes[key].append(index.physical_name(table.name, naming))
    manifest.update(indexes)
    manifest["foreign_keys_without_index"] = _unindexed_relations(naming)
    manifest["updated_at_without_trigger"] = [
        naming.table(t.name)
        for t in ALI_SCHEMA.tables
        if any(c.name == "updatedAt" for c in t.columns)
    ]
    manifest["dead_tuples"] = {"table": naming.table(CHURN_TABLE), "rows_updated": churned}
    return manifest


def _unindexed_relations(naming: Naming) -> list[str]:
    """Relations (enforced or logical) whose column leads no index: the runbook adds them."""
    out = []
    for table in ALI_SCHEMA.tables:
        leading = {idx.columns[0] for idx in table.indexes}
        for fk in table.foreign_keys:
            if fk.column not in leading:
                kind = "" if fk.enforced else " (logical, no foreign key)"
                out.append(f"{naming.table(table.name)}.{naming.column(fk.column)}{kind}")
    return out


def verify_counts(info: ConnInfo, naming: Naming | str) -> dict[str, int]:
    """Count the injected defects with SQL (see seed.anomalies)."""
    naming = Naming(naming)
    with connect(info) as conn:
        _use_schema(conn, info.schema)
        return count_anomalies(conn, naming)
