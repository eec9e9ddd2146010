"""The quarterly review's own figures: storage growth from the size snapshots, and what each
retention policy deleted (``pgrunbook.cleanup_runs``) over the review window.

The slowest queries and index bloat come from discovery's ``statements`` and ``bloat``
checks; this module adds what discovery cannot see: history.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import psycopg

from pgrunbook.history import Snapshot
from pgrunbook.rows import fetch

RUNS_EXIST_SQL: Final = "SELECT to_regclass('pgrunbook.cleanup_runs') IS NOT NULL"

YIELDS_SQL: Final = """
SELECT policy, count(*)::int AS runs, coalesce(sum(deleted), 0)::int8 AS deleted,
       max(finished_at) AS last_run
  FROM pgrunbook.cleanup_runs
 WHERE finished_at >= now() - make_interval(days => %(days)s)
 GROUP BY policy
 ORDER BY policy
"""

SECONDS_PER_DAY: Final = 86_400
# Snapshots closer than this say nothing about a daily rate (a run's own size changes).
MIN_SPAN_DAYS: Final = 1.0


@dataclass(frozen=True)
class Growth:
    """How fast the database grew between the oldest and newest snapshot of the window."""

    window_days: int
    snapshots: int  # in the window
    oldest: Snapshot | None
    newest: Snapshot | None
    bytes_per_day: float | None  # None: no two snapshots MIN_SPAN_DAYS apart in the window
    current_bytes: int
    limit_bytes: int | None
    days_until_limit: float | None  # None: no limit, or not growing

    def to_json(self) -> dict[str, Any]:
        def point(s: Snapshot | None) -> dict[str, Any] | None:
            if s is None:
                return None
            return {"taken_at": s.taken_at.isoformat(), "database_bytes": s.database_bytes}

        return {
            "window_days": self.window_days,
            "snapshots": self.snapshots,
            "oldest": point(self.oldest),
            "newest": point(self.newest),
            "bytes_per_day": self.bytes_per_day,
            "database_bytes": self.current_bytes,
            "limit_bytes": self.limit_bytes,
            "days_until_limit": self.days_until_limit,
        }


def growth(
    history: Sequence[Snapshot],
    *,
    now: datetime,
    current_bytes: int,
    limit_bytes: int | None,
    window_days: int,
) -> Growth:
    """Growth over the snapshots taken in the last ``window_days`` (``history`` oldest first).

    Bytes per day is (newest - oldest) / the days between them (at least ``MIN_SPAN_DAYS``);
    the days until the limit are (limit - current size) / bytes per day, 0 when the limit
    is already reached.
    """
    recent = [s for s in history if s.taken_at >= now - timedelta(days=window_days)]
    oldest = recent[0] if recent else None
    newest = recent[-1] if recent else None
    per_day: float | None = None
    if oldest is not None and newest is not None:
        days = (newest.taken_at - oldest.taken_at).total_seconds() / SECONDS_PER_DAY
        if days >= MIN_SPAN_DAYS:
            per_day = (newest.database_bytes - oldest.database_bytes) / days
    until: float | None = None
    if limit_bytes is not None:
        if current_bytes >= limit_bytes:
            until = 0.0
        elif per_day is not None and per_day > 0:
            until = (limit_bytes - current_bytes) / per_day
    return Growth(
        window_days, len(recent), oldest, newest, per_day, current_bytes, limit_bytes, until
    )


@dataclass(frozen=True)
class PolicyYield:
    policy: str
    runs: int
    deleted: int
    last_run: datetime | None


def yields(conn: psycopg.Connection[Any], window_days: int) -> dict[str, PolicyYield]:
    """Rows each policy deleted in the window, from ``pgrunbook.cleanup_runs`` (if any)."""
    exists = conn.execute(RUNS_EXIST_SQL).fetchone()
    if not exists or not exists[0]:
        return {}
    return {y.policy: y for y in fetch(conn, PolicyYield, YIELDS_SQL, {"days": window_days})}
