"""The read-only tasks' results: discovery's findings (unused indexes, bloat, slowest
queries), storage growth from the size snapshots, and the retention policies' yields.

Each fills a ``TaskResult``: raw figures in ``details`` (the JSON), formatted cells in its
``Grid`` (the terminal and Markdown tables), a one-line summary.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

import psycopg

from pgrunbook import history
from pgrunbook.cadence import review
from pgrunbook.cadence.report import Grid, TaskResult
from pgrunbook.cadence.tasks import REVIEW_DAYS, FindingsTask, RetentionTask
from pgrunbook.cleanup import dry_run
from pgrunbook.discover import DiscoveryReport
from pgrunbook.findings import Finding
from pgrunbook.report.units import count, duration, percent, size


def when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M") if moment else "-"


def findings(report: DiscoveryReport, task: FindingsTask, result: TaskResult) -> None:
    """A discovery check's findings (of indexes only, for ``index_bloat``) as the result."""
    [status] = [c for c in report.checks if c.id == task.check]
    result.details = {"check": status.to_json()}
    if status.status == "failed":
        result.status = "failed"
        result.error = f"the {task.check} check failed: {status.reason}"
        return
    if status.status == "skipped":
        result.summary = f"the {task.check} check was skipped: {status.reason}"
        return
    found = report.by_check(task.check)
    if task.id == "index_bloat":
        found = [f for f in found if f.details.get("kind") == "index"]
    result.details["findings"] = [f.to_json() for f in found]
    if task.id == "unused_indexes":
        _unused(found, result)
    elif task.id == "slow_queries":
        _slow(found, report.facts.get(task.check, {}), result)
    else:
        judged = report.facts.get(task.check, {}).get("judged", [])
        if task.id == "index_bloat":
            judged = [j for j in judged if j.get("kind") == "index"]
        _bloat(found, len(judged), result, indexes_only=task.id == "index_bloat")


def growth(
    conn: psycopg.Connection[Any], report: DiscoveryReport, now: datetime, result: TaskResult
) -> None:
    """The size now (``database_size``), its growth from the snapshots, against the limit."""
    [status] = [c for c in report.checks if c.id == "database_size"]
    if status.status != "ran":
        result.status = "failed"
        result.error = f"the database_size check {status.status}: {status.reason}"
        return
    facts = report.facts.get("database_size", {})
    found = review.growth(
        history.history(conn),
        now=now,
        current_bytes=int(facts["bytes"]),
        limit_bytes=facts.get("limit_bytes"),
        window_days=REVIEW_DAYS,
    )
    result.details = {**found.to_json(), "largest_tables": facts.get("largest_tables", [])}
    per_day = found.bytes_per_day
    span = (
        duration(found.newest.taken_at - found.oldest.taken_at)
        if found.oldest and found.newest
        else "-"
    )
    limit = found.limit_bytes
    rows = [
        ("database size now", size(found.current_bytes)),
        ("plan limit", size(limit) if limit else "unknown (--plan-limit MB)"),
        ("used", percent(found.current_bytes / limit) if limit else "-"),
        (f"snapshots in the last {REVIEW_DAYS} days", str(found.snapshots)),
        ("oldest", _point(found.oldest)),
        ("newest", _point(found.newest)),
        (
            "growth per day",
            f"{size(per_day)} ({per_day:,.0f} bytes)" if per_day is not None else "-",
        ),
        (
            "days until the limit",
            _days(found.days_until_limit) if found.days_until_limit is not None else "-",
        ),
    ]
    result.grid = Grid(("measure", "value"), tuple(rows))
    if per_day is None:
        why = (
            "fewer than two size snapshots"
            if found.snapshots < 2
            else f"the size snapshots span less than {review.MIN_SPAN_DAYS:g} day"
        )
        result.summary = (
            f"{size(found.current_bytes)} now; growth unknown: {why} in the last "
            f"{REVIEW_DAYS} days (every pgrunbook run records one)"
        )
        return
    result.summary = f"{size(found.current_bytes)} now, growing {size(per_day)} per day over {span}"
    if limit is None:
        result.summary += "; plan limit unknown (pass --plan-limit MB)"
    elif found.days_until_limit is not None:
        result.summary += (
            f"; the {size(limit)} plan limit is reached in about "
            f"{_days(found.days_until_limit)} days"
        )
    else:
        result.summary += f"; not growing towards the {size(limit)} plan limit"


def retention(
    conn: psycopg.Connection[Any], task: RetentionTask, batch_size: int, result: TaskResult
) -> None:
    """Each policy's yield over the review window and what it would delete now."""
    result.notes += [f"skipped {s.policy}: {s.reason}" for s in task.skipped]
    yields = review.yields(conn, REVIEW_DAYS)
    plans = [dry_run(conn, p, batch_size) for p in task.policies]
    policies: list[dict[str, Any]] = []
    rows: list[tuple[str, ...]] = []
    for policy, plan in zip(task.policies, plans, strict=True):
        got = yields.get(policy.name)
        runs, deleted = (got.runs, got.deleted) if got else (0, 0)
        last = got.last_run if got else None
        policies.append(
            {
                "policy": policy.name,
                "table": policy.table.qualified,
                "cadence": policy.policy.cadence,
                "older_than_days": policy.policy.older_than_days,
                "runs": runs,
                "deleted": deleted,
                "last_run": last.isoformat() if last else None,
                "would_delete_now": plan.rows,
            }
        )
        rows.append(
            (
                policy.name,
                policy.table.qualified,
                policy.policy.cadence,
                f"{policy.policy.older_than_days} days",
                str(runs),
                count(deleted),
                f"{last:%Y-%m-%d}" if last else "-",
                count(plan.rows),
            )
        )
    result.grid = Grid(
        (
            "policy",
            "table",
            "cadence",
            "older than",
            "runs",
            "deleted",
            "last run",
            "due now",
        ),
        tuple(rows),
    )
    result.details = {
        "window_days": REVIEW_DAYS,
        "policies": policies,
        "skipped": [{"policy": s.policy, "reason": s.reason} for s in task.skipped],
    }
    deleted_total = sum(p["deleted"] for p in policies)
    due = sum(p["would_delete_now"] for p in policies)
    result.summary = (
        f"{len(policies)} policies deleted {deleted_total:,} rows in the last "
        f"{REVIEW_DAYS} days (runs, deleted); {due:,} rows are due now"
    )


def _days(days: float) -> str:
    return f"{days:,.1f}" if days < 10 else f"{days:,.0f}"


def _point(snapshot: history.Snapshot | None) -> str:
    if snapshot is None:
        return "-"
    return f"{when(snapshot.taken_at)}: {size(snapshot.database_bytes)}"


VERDICTS: Final = {
    "unused": "unused",
    "rarely_used": "rarely used",
    "insufficient_evidence": "stats too young",
}


def _unused(found: list[Finding], result: TaskResult) -> None:
    result.grid = Grid(
        ("index", "table", "size", "scans", "verdict"),
        tuple(
            (
                f.object,
                str(f.details.get("table", "")),
                size(f.details.get("bytes")),
                count(f.details.get("idx_scan")),
                VERDICTS.get(str(f.details.get("verdict")), "-"),
            )
            for f in found
        ),
    )
    young = sum(1 for f in found if f.details.get("verdict") == "insufficient_evidence")
    result.summary = f"{len(found)} indexes never or rarely scanned"
    if young:
        result.summary += f" ({young} on statistics too young to judge: check again later)"
    result.notes += [f"{f.object}: {f.fix}" for f in found if f.fix]


def _bloat(found: list[Finding], judged: int, result: TaskResult, *, indexes_only: bool) -> None:
    def ratio(f: Finding) -> float | None:
        measured = f.details.get("measured_ratio")
        return measured if measured is not None else f.details.get("estimated_ratio")

    def wasted(f: Finding) -> int | None:
        measured = f.details.get("measured_wasted_bytes")
        return measured if measured is not None else f.details.get("estimated_wasted_bytes")

    result.grid = Grid(
        ("object", "kind", "bloat", "wasted", "size", "method", "severity"),
        tuple(
            (
                f.object,
                str(f.details.get("kind", "")),
                percent(ratio(f)),
                size(wasted(f)),
                size(f.details.get("actual_bytes")),
                str(f.details.get("method", "")),
                f.severity.value,
            )
            for f in found
        ),
    )
    what = "indexes" if indexes_only else "tables and indexes"
    result.summary = (
        f"{len(found)} {what} over the bloat threshold ({judged} large enough to estimate)"
    )
    result.notes += [f"{f.object}: {f.fix}" for f in found if f.fix]


def _slow(found: list[Finding], facts: dict[str, Any], result: TaskResult) -> None:
    if not facts.get("available", False):
        reason = str(facts.get("reason", "pg_stat_statements is not available"))
        result.summary = f"no query statistics: {reason}"
        result.notes += [f"to enable: {f.fix}" for f in found if f.fix]
        result.details["facts"] = facts
        return
    ranked = sorted(found, key=lambda f: -float(f.details.get("total_ms", 0.0)))
    result.grid = Grid(
        ("query", "calls", "total ms", "mean ms", "severity", "statement"),
        tuple(
            (
                f.object,
                count(f.details.get("calls")),
                f"{float(f.details.get('total_ms', 0.0)):,.1f}",
                f"{float(f.details.get('mean_ms', 0.0)):,.1f}",
                f.severity.value,
                str(f.details.get("query", ""))[:100],
            )
            for f in ranked
        ),
    )
    slow = sum(1 for f in found if f.severity.value != "info")
    result.summary = f"{len(found)} top statements; {slow} slow"
    result.details["facts"] = facts
