"""``EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)`` of one query, read into a summary.

The query really runs (that is what ANALYZE means), inside a transaction that is rolled
back, under a short lock timeout and a statement timeout. The summary keeps what a before /
after comparison needs: the plan's top node and its main line of nodes, the indexes it
reads, the execution time and the shared buffers it touched, the rows it returned, its scans
and sorts, and the plan tree itself. The demo uses it for the runbook's room-history query;
``pgrunbook explain`` (``pgrunbook.explain``) for every critical query of script 10.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

import psycopg
from psycopg import errors, sql

from pgrunbook.errors import PgRunbookError
from pgrunbook.locking import timeouts

EXPLAIN_SQL: Final = sql.SQL("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {}")
LOCK_TIMEOUT_MS: Final = 5_000
STATEMENT_TIMEOUT_MS: Final = 60_000
# children that are not the plan's main line (the subquery of WHERE x = (SELECT ...))
_SIDE: Final = frozenset({"InitPlan", "SubPlan"})


@dataclass(frozen=True)
class PlanSummary:
    """One ``EXPLAIN ANALYZE`` of ``query`` (the median run when there were several)."""

    query: str
    node_type: str  # the top plan node ("Limit")
    path: tuple[str, ...]  # the main line, top down ("Limit", "Index Scan using i on t")
    indexes: tuple[str, ...]  # every index the plan reads, in plan order, once each
    execution_ms: float
    planning_ms: float
    shared_hit: int  # shared buffers found in the cache (the whole plan)
    shared_read: int  # shared buffers read from disk or the OS cache
    rows: float = 0.0  # the rows the top node returned
    scans: tuple[str, ...] = ()  # the scan nodes ("Seq Scan on Message"), in plan order
    sorts: tuple[str, ...] = ()  # the sorts ("Sort by createdAt DESC (top-N heapsort)")
    # the plan as EXPLAIN (FORMAT JSON) gives it (the top "Plan"); not compared
    plan: dict[str, Any] | None = field(default=None, compare=False, repr=False)

    @property
    def buffers(self) -> int:
        return self.shared_hit + self.shared_read

    def uses(self, index: str) -> bool:
        return index in self.indexes

    def to_json(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "node_type": self.node_type,
            "path": list(self.path),
            "indexes": list(self.indexes),
            "execution_ms": round(self.execution_ms, 3),
            "planning_ms": round(self.planning_ms, 3),
            "shared_hit": self.shared_hit,
            "shared_read": self.shared_read,
            "buffers": self.buffers,
            "rows": self.rows,
            "scans": list(self.scans),
            "sorts": list(self.sorts),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PlanSummary:
        """The summary ``to_json`` wrote (KeyError, TypeError or ValueError when it is not one)."""
        return cls(
            query=str(data["query"]),
            node_type=str(data["node_type"]),
            path=tuple(str(p) for p in data["path"]),
            indexes=tuple(str(i) for i in data["indexes"]),
            execution_ms=float(data["execution_ms"]),
            planning_ms=float(data["planning_ms"]),
            shared_hit=int(data["shared_hit"]),
            shared_read=int(data["shared_read"]),
            rows=float(data.get("rows", 0.0)),
            scans=tuple(str(p) for p in data.get("scans", ())),
            sorts=tuple(str(p) for p in data.get("sorts", ())),
            plan=data.get("plan") if isinstance(data.get("plan"), dict) else None,
        )


def _nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)


def describe(node: dict[str, Any]) -> str:
    """``Index Scan using idx on Message``, ``Sort``, ``Seq Scan on Message``."""
    text = str(node["Node Type"])
    if "Index Name" in node:
        text += f" using {node['Index Name']}"
    if "Relation Name" in node:
        text += f" on {node['Relation Name']}"
    return text


def _sort(node: dict[str, Any]) -> str:
    """``Sort by createdAt DESC (top-N heapsort)``, ``Incremental Sort by ...``."""
    text = str(node["Node Type"])
    keys = node.get("Sort Key")
    if keys:
        text += " by " + ", ".join(str(k) for k in keys)
    if "Sort Method" in node:
        text += f" ({node['Sort Method']})"
    return text


def plan_tree(plan: dict[str, Any]) -> list[str]:
    """The plan as indented lines, the way ``EXPLAIN ANALYZE`` prints it, shortened:
    ``-> Index Scan using idx on Message (rows=50 loops=1 time=0.052 ms)``."""
    lines: list[str] = []

    def walk(node: dict[str, Any], depth: int) -> None:
        text = describe(node)
        if "Sort Key" in node:
            text = _sort(node)
        if node.get("Parent Relationship") in _SIDE:
            text = f"{node['Parent Relationship']}: {text}"
        details = []
        if "Actual Rows" in node:
            details.append(f"rows={node['Actual Rows']:g} loops={node.get('Actual Loops', 1)}")
        if "Actual Total Time" in node:
            details.append(f"time={float(node['Actual Total Time']):.3f} ms")
        for key in ("Index Cond", "Filter", "Recheck Cond"):
            if key in node:
                details.append(f"{key.lower()}: {node[key]}")
        if node.get("Rows Removed by Filter"):
            details.append(f"removed by filter: {node['Rows Removed by Filter']}")
        prefix = "  " * depth + ("-> " if depth else "")
        lines.append(prefix + text + (f" ({'; '.join(details)})" if details else ""))
        for child in node.get("Plans", []):
            walk(child, depth + 1)

    walk(plan, 0)
    return lines


def shape(summary: PlanSummary) -> str:
    """The plan's scans and sorts in a few words: ``Seq Scan + Sort``, ``Index Scan using
    idx_a``, ``Bitmap Index Scan using idx_b + Sort`` (a bitmap heap scan is left out: its
    index scan says which index)."""
    if summary.plan is not None:
        nodes = [n for n in _nodes(summary.plan) if str(n["Node Type"]).endswith("Scan")]
        bitmap = any(n["Node Type"] == "Bitmap Index Scan" for n in nodes)
        parts = [
            str(n["Node Type"]) + (f" using {n['Index Name']}" if "Index Name" in n else "")
            for n in nodes
            if not (bitmap and n["Node Type"] == "Bitmap Heap Scan")
        ]
    else:
        parts = list(summary.scans)
    text = ", ".join(dict.fromkeys(parts)) or summary.node_type
    return text + (" + Sort" if summary.sorts else "")


def _main_line(plan: dict[str, Any]) -> tuple[str, ...]:
    path = [describe(plan)]
    node: dict[str, Any] | None = plan
    while node is not None:
        children = [c for c in node.get("Plans", []) if c.get("Parent Relationship") not in _SIDE]
        node = children[0] if children else None
        if node is not None:
            path.append(describe(node))
    return tuple(path)


def summarize(query: str, document: list[dict[str, Any]]) -> PlanSummary:
    """The summary of one ``EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)`` result."""
    top = document[0]
    plan: dict[str, Any] = top["Plan"]
    indexes = dict.fromkeys(str(n["Index Name"]) for n in _nodes(plan) if "Index Name" in n)
    return PlanSummary(
        query=query,
        node_type=str(plan["Node Type"]),
        path=_main_line(plan),
        indexes=tuple(indexes),
        execution_ms=float(top["Execution Time"]),
        planning_ms=float(top.get("Planning Time", 0.0)),
        shared_hit=int(plan.get("Shared Hit Blocks", 0)),
        shared_read=int(plan.get("Shared Read Blocks", 0)),
        rows=float(plan.get("Actual Rows", 0.0)),
        scans=tuple(describe(n) for n in _nodes(plan) if str(n["Node Type"]).endswith("Scan")),
        sorts=tuple(_sort(n) for n in _nodes(plan) if str(n["Node Type"]).endswith("Sort")),
        plan=plan,
    )


def explain_analyze(
    conn: psycopg.Connection[Any],
    query: sql.Composable,
    *,
    runs: int = 1,
    lock_timeout_ms: int = LOCK_TIMEOUT_MS,
    statement_timeout_ms: int = STATEMENT_TIMEOUT_MS,
) -> PlanSummary:
    """Run ``EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) query`` ``runs`` times in one
    transaction that is rolled back (each run in its own savepoint, rolled back too), and
    summarise the run with the median execution time.

    Raises PgRunbookError when a lock is not granted within ``lock_timeout_ms`` or a run
    takes longer than ``statement_timeout_ms``.
    """
    text = query.as_string()
    statement = EXPLAIN_SQL.format(query)
    found: list[PlanSummary] = []
    try:
        with conn.transaction():
            with timeouts(conn, lock_timeout_ms=lock_timeout_ms,
                          statement_timeout_ms=statement_timeout_ms):  # fmt: skip
                for _ in range(max(runs, 1)):
                    # each run in a savepoint rolled back: a query that changes data
                    # finds every run the data as it was
                    with conn.transaction():
                        row = conn.execute(statement).fetchone()
                        assert row is not None
                        found.append(summarize(text, row[0]))
                        raise psycopg.Rollback()
            raise psycopg.Rollback()
    except (errors.LockNotAvailable, errors.QueryCanceled) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise PgRunbookError(
            f"EXPLAIN ANALYZE did not finish ({first}): {text}",
            "find what blocks it with 'pgrunbook monitor' and try again",
        ) from None
    found.sort(key=lambda s: s.execution_ms)
    return found[(len(found) - 1) // 2]


@dataclass(frozen=True)
class Comparison:
    """The same query explained before and after a change."""

    before: PlanSummary
    after: PlanSummary

    @property
    def speedup(self) -> float:
        """How many times faster the query ran after (execution time)."""
        return self.before.execution_ms / max(self.after.execution_ms, 0.001)

    def to_json(self) -> dict[str, Any]:
        return {
            "before": self.before.to_json(),
            "after": self.after.to_json(),
            "speedup": round(self.speedup, 1),
        }
