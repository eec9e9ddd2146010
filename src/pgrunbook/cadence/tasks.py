"""What each cadence of the runbook's maintenance schedule (section 8) does, in this database.

The tasks are data, derived from the profile (retention policies and their ``cadence``) and
the catalog (the schema's tables, the runbook's high-traffic tables in this database's
naming); ``execute`` runs them. Every task names the runbook line it implements.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Literal

from pgrunbook.catalog import Catalog, Table
from pgrunbook.cleanup import PolicySkip, ResolvedPolicy, resolve_policies
from pgrunbook.maintain.choose import HIGH_TRAFFIC, Choice, TableChoice
from pgrunbook.profile import Profile
from pgrunbook.resolve import find_table


class Cadence(StrEnum):
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"
    QUARTERLY = "quarterly"


# The quarterly review keeps to this window (snapshots, cleanup runs).
REVIEW_DAYS: Final = 90


@dataclass(frozen=True)
class CleanupTask:
    """Delete the rows of the policies whose ``cadence`` is this one (``run_cleanup``)."""

    cadence: Cadence
    policies: tuple[ResolvedPolicy, ...]
    skipped: tuple[PolicySkip, ...]
    runbook: str
    id: str = "cleanup"

    @property
    def title(self) -> str:
        return f"Retention cleanup ({self.cadence} policies)"


@dataclass(frozen=True)
class AnalyzeTask:
    """``ANALYZE`` each table of the schema, one at a time."""

    tables: tuple[Table, ...]
    id: str = "analyze"
    title: str = "ANALYZE (update statistics)"
    runbook: str = "Weekly: ANALYZE; -- update statistics"


@dataclass(frozen=True)
class VacuumTask:
    """``VACUUM (ANALYZE)`` of the runbook's high-traffic tables (``maintain``)."""

    choice: Choice
    missing: tuple[str, ...]  # high-traffic tables this database does not have
    id: str = "vacuum"
    title: str = "VACUUM (ANALYZE) of the high-traffic tables"
    runbook: str = 'Monthly: VACUUM (ANALYZE) "Message"; "Notification"; "GiftSend";'


FindingsKind = Literal["unused_indexes", "bloat", "slow_queries", "index_bloat"]


@dataclass(frozen=True)
class FindingsTask:
    """A report of one discovery check's findings (``index_bloat``: the index findings)."""

    id: FindingsKind
    check: str  # the discovery check it reports
    title: str
    runbook: str


@dataclass(frozen=True)
class GrowthTask:
    """The database's size, its growth from ``pgrunbook.snapshots``, against the plan."""

    id: str = "storage_growth"
    title: str = "Storage growth against the plan limit"
    runbook: str = "Quarterly: review storage growth"


@dataclass(frozen=True)
class RetentionTask:
    """Every retention policy: what it deleted in the window and what it would delete now."""

    policies: tuple[ResolvedPolicy, ...]
    skipped: tuple[PolicySkip, ...]
    id: str = "retention"
    title: str = "Retention policies and their yields"
    runbook: str = "Quarterly: update retention policies if needed"


Task = CleanupTask | AnalyzeTask | VacuumTask | FindingsTask | GrowthTask | RetentionTask

CLEANUP_LINES: Final = {
    Cadence.DAILY: (
        """Daily: DELETE FROM "RefreshToken" WHERE "expiresAt" < NOW() - INTERVAL '7 days';"""
    ),
    Cadence.WEEKLY: (
        """Weekly: DELETE FROM "Notification" WHERE "isRead" = true """
        """AND "createdAt" < NOW() - INTERVAL '30 days';"""
    ),
}

UNUSED = FindingsTask(
    "unused_indexes",
    "unused_indexes",
    "Unused indexes",
    "Monthly: check for unused indexes (pg_stat_user_indexes, idx_scan = 0)",
)
BLOAT = FindingsTask(
    "bloat", "bloat", "Table and index bloat", "Monthly: check table bloat (dead tuples)"
)
SLOW = FindingsTask(
    "slow_queries", "statements", "Slowest queries", "Quarterly: review and optimize slow queries"
)
INDEX_BLOAT = FindingsTask(
    "index_bloat", "bloat", "Index bloat", "Quarterly: check for index bloat"
)


def _cleanup(catalog: Catalog, profile: Profile, cadence: Cadence) -> CleanupTask:
    names = [p.name for p in profile.retention if p.cadence == cadence.value]
    if names:
        resolved, skipped = resolve_policies(catalog, profile.retention, names)
    else:
        resolved, skipped = [], []
    return CleanupTask(cadence, tuple(resolved), tuple(skipped), CLEANUP_LINES[cadence])


def analyze_tables(catalog: Catalog) -> tuple[Table, ...]:
    """The schema's tables (a partitioned table's ANALYZE covers its partitions)."""
    return tuple(t for t in catalog if t.kind in ("r", "p") and not t.is_partition)


def high_traffic(catalog: Catalog) -> VacuumTask:
    """The runbook's high-traffic tables in this database's naming."""
    chosen, missing = [], []
    for logical in HIGH_TRAFFIC:
        table = find_table(catalog, logical)
        if table is None:
            missing.append(logical)
            continue
        chosen.append(
            TableChoice(table.schema, table.name, table.oid, ("high-traffic table (runbook)",))
        )
    return VacuumTask(Choice(chosen, []), tuple(missing))


def plan(catalog: Catalog, profile: Profile, cadence: Cadence) -> list[Task]:
    """The tasks of ``cadence`` for the schema ``catalog`` describes, in the order they run."""
    if cadence is Cadence.DAILY:
        return [_cleanup(catalog, profile, cadence)]
    if cadence is Cadence.WEEKLY:
        return [AnalyzeTask(analyze_tables(catalog)), _cleanup(catalog, profile, cadence)]
    if cadence is Cadence.MONTHLY:
        return [high_traffic(catalog), UNUSED, BLOAT]
    resolved, skipped = resolve_policies(catalog, profile.retention)
    return [SLOW, INDEX_BLOAT, GrowthTask(), RetentionTask(tuple(resolved), tuple(skipped))]


def checks_needed(tasks: list[Task]) -> tuple[str, ...]:
    """The discovery checks the tasks report (``database_size`` for storage growth)."""
    ids: list[str] = []
    for task in tasks:
        if isinstance(task, FindingsTask):
            ids.append(task.check)
        elif isinstance(task, GrowthTask):
            ids.append("database_size")
    return tuple(dict.fromkeys(ids))
