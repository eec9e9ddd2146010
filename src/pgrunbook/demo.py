"""The demo: an embedded PostgreSQL with the reference data, discovery, and what comes next.

Later steps of the runbook extend ``run_demo`` as they are built.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from psycopg import sql

from pgrunbook.connect import connect
from pgrunbook.discover import DiscoveryReport, discover
from pgrunbook.dsn import ConnInfo
from pgrunbook.embedded import LocalServer
from pgrunbook.reference.model import ALI_SCHEMA
from pgrunbook.reference.naming import Naming
from pgrunbook.seed import SeedReport, seed, verify_counts
from pgrunbook.seed.load import Progress

DEMO_DATABASE: Final = "ali_demo"
DEMO_EXTENSIONS: Final = ("pg_stat_statements", "pgstattuple")

_TABLE_SIZES: Final = sql.SQL(
    "SELECT c.relname, c.reltuples::bigint, pg_total_relation_size(c.oid), "
    "coalesce(s.n_dead_tup, 0) FROM pg_class c "
    "JOIN pg_namespace n ON n.oid = c.relnamespace "
    "LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid "
    "WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY pg_total_relation_size(c.oid) DESC"
)

# What the runbook does next, in its order (section 3), with the pgrunbook command for each.
NEXT_STEPS: Final = (
    ("01 discovery", "pgrunbook discover", "find dead tuples, unused/duplicate indexes, orphans"),
    ("02 indexes", "pgrunbook apply indexes", "15 indexes, CREATE INDEX CONCURRENTLY"),
    ("03 triggers", "pgrunbook apply triggers", "trg_<table>_updated_at on every updatedAt"),
    ("04 audit log", "pgrunbook apply audit", "AuditLog table and audit_log() function"),
    ("05 roles", "pgrunbook apply roles", "app_user, app_readonly, app_admin"),
    ("06 constraints", "pgrunbook apply constraints", "12 CHECK constraints, NOT VALID first"),
    ("07 maintenance", "pgrunbook maintain", "VACUUM (ANALYZE), REINDEX CONCURRENTLY"),
    ("08 cleanup", "pgrunbook cleanup", "expired tokens, old read notifications (dry run)"),
    ("09 monitoring", "pgrunbook monitor", "connections, locks, cache hit ratios"),
    ("10 EXPLAIN", "pgrunbook explain", "prove the speedup of the critical queries"),
)


@dataclass
class TableSummary:
    name: str
    rows: int
    bytes: int
    dead_tuples: int


@dataclass
class DemoResult:
    dsn: ConnInfo
    server_version: str
    seed: SeedReport
    tables: list[TableSummary] = field(default_factory=list)
    defects: dict[str, int] = field(default_factory=dict)
    discovery: DiscoveryReport | None = None
    kept: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "dsn": self.dsn.display(),
            "server_version": self.server_version,
            "kept_running": self.kept,
            "seed": self.seed.to_json(),
            "tables": [t.__dict__ for t in self.tables],
            "defects_found_by_sql": self.defects,
            "discovery": self.discovery.to_json() if self.discovery else None,
            "next_steps": [{"script": s, "command": c, "what": w} for s, c, w in NEXT_STEPS],
        }


def run_demo(
    server: LocalServer,
    *,
    scale: str = "small",
    naming: Naming = Naming.PRISMA,
    progress: Progress | None = None,
    log: Callable[[str], None] = lambda text: None,
) -> DemoResult:
    """Create a fresh demo database on ``server``, seed it and summarise it."""
    admin = server.start()
    with connect(admin, autocommit=True) as conn:
        ident = sql.Identifier(DEMO_DATABASE)
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(ident))
        row = conn.execute("SHOW server_version").fetchone()
        version = str(row[0]) if row else "?"
    info = server.dsn(DEMO_DATABASE)
    with connect(info, autocommit=True) as conn:
        # what a DBA would install: query statistics (preloaded by the embedded server) and
        # pgstattuple, which turns discovery's bloat estimates into measurements
        for extension in DEMO_EXTENSIONS:
            conn.execute(
                sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(sql.Identifier(extension))
            )
    log(f"PostgreSQL {version} running at {info.display()}")
    report = seed(info, scale=scale, naming=naming, progress=progress)
    result = DemoResult(dsn=info, server_version=version, seed=report)
    with connect(info) as conn:
        for name, rows, size, dead in conn.execute(_TABLE_SIZES).fetchall():
            result.tables.append(TableSummary(str(name), int(rows), int(size), int(dead)))  # type: ignore[call-overload]
    result.defects = verify_counts(info, naming)
    log("running discovery (runbook script 01)")
    result.discovery = discover(info)
    assert len(result.tables) == len(ALI_SCHEMA.tables)
    return result
