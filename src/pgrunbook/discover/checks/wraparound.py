"""Transaction-ID wraparound: how old the database's oldest unfrozen transaction ID is.

PostgreSQL's transaction IDs are 32 bits: a row must be frozen by VACUUM before it is about
2^31 transactions old, or the server stops assigning new IDs (no more writes) to protect the
data. Autovacuum starts an anti-wraparound VACUUM of a table when its age passes
``autovacuum_freeze_max_age`` (200 million by default), so a database far beyond that
means autovacuum is not keeping up (blocked by long transactions, cancelled, or too slow).

One database-wide finding (``database <name>``) from ``age(datfrozenxid)``, with the
schema's oldest tables (table or TOAST ``relfrozenxid``) in its details and fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from psycopg import sql

from pgrunbook.discover.check import Check, CheckResult
from pgrunbook.discover.context import Context
from pgrunbook.findings import Finding, Severity

# The hard limit: the server refuses new transaction IDs shortly before this age.
WRAPAROUND_LIMIT: Final = 2**31

DATABASE_SQL: Final = """
SELECT d.datname AS database, age(d.datfrozenxid)::int8 AS age,
       mxid_age(d.datminmxid)::int8 AS multixact_age,
       current_setting('autovacuum_freeze_max_age')::int8 AS freeze_max_age
  FROM pg_database d
 WHERE d.datname = current_database()
"""

# Partitioned tables have no relfrozenxid (age() of it is INT_MAX): tables and matviews only.
OLDEST_TABLES_SQL: Final = """
SELECT n.nspname AS schema, c.relname AS name,
       age(c.relfrozenxid)::int8 AS table_age,
       age(t.relfrozenxid)::int8 AS toast_age,
       greatest(age(c.relfrozenxid), age(t.relfrozenxid))::int8 AS age
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_class t ON t.oid = c.reltoastrelid
 WHERE n.nspname = %(schema)s AND c.relkind IN ('r', 'm')
 ORDER BY greatest(age(c.relfrozenxid), age(t.relfrozenxid)) DESC, c.relname
 LIMIT %(top)s
"""


@dataclass(frozen=True)
class Thresholds:
    warning_age: int = 500_000_000
    critical_age: int = 1_500_000_000
    top_tables: int = 5  # the oldest tables of the schema shown and vacuumed by the fix


@dataclass(frozen=True)
class DatabaseAge:
    database: str
    age: int
    multixact_age: int
    freeze_max_age: int


@dataclass(frozen=True)
class TableAge:
    schema: str
    name: str
    table_age: int
    toast_age: int | None
    age: int

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"


def _table_json(table: TableAge) -> dict[str, object]:
    return {
        "table": table.qualified,
        "age": table.age,
        "table_age": table.table_age,
        "toast_age": table.toast_age,
    }


def fix_sql(tables: list[TableAge]) -> str:
    """``VACUUM (FREEZE, ANALYZE)`` of ``tables`` (the whole database when there are none)."""
    if not tables:
        return "VACUUM (FREEZE, ANALYZE);"
    targets = sql.SQL(", ").join(sql.Identifier(t.schema, t.name) for t in tables)
    return sql.SQL("VACUUM (FREEZE, ANALYZE) {};").format(targets).as_string()


def run(ctx: Context, limits: Thresholds) -> CheckResult:
    (db,) = ctx.rows(DatabaseAge, DATABASE_SQL)
    oldest = ctx.rows(TableAge, OLDEST_TABLES_SQL, {"schema": ctx.schema, "top": limits.top_tables})
    tables = [_table_json(t) for t in oldest]
    facts = {
        "database": db.database,
        "age": db.age,
        "multixact_age": db.multixact_age,
        "autovacuum_freeze_max_age": db.freeze_max_age,
        "oldest_tables": tables,
    }
    if db.age < limits.warning_age:
        return CheckResult([], facts)
    critical = db.age >= limits.critical_age
    share = db.age / WRAPAROUND_LIMIT
    finding = Finding(
        check=CHECK.id,
        severity=Severity.CRITICAL if critical else Severity.WARNING,
        object=f"database {db.database}",
        message=f"transaction ID age {db.age:,} is {share:.1%} of the way to wraparound "
        f"(2^31; autovacuum_freeze_max_age is {db.freeze_max_age:,}): autovacuum is not "
        "freezing fast enough; at the limit the server stops accepting writes",
        details={
            "age": db.age,
            "multixact_age": db.multixact_age,
            "autovacuum_freeze_max_age": db.freeze_max_age,
            "wraparound_limit": WRAPAROUND_LIMIT,
            "remaining": WRAPAROUND_LIMIT - db.age,
            "warning_age": limits.warning_age,
            "critical_age": limits.critical_age,
            "oldest_tables": tables,
        },
        fix=fix_sql(oldest),
    )
    return CheckResult([finding], facts)


CHECK = Check(
    id="wraparound",
    title="Transaction ID wraparound age",
    run=run,
    thresholds=Thresholds(),
)
