"""Query speedups: each critical query of the profile before and after ``pgrunbook apply``.

Usage: python benchmarks/query_speedups.py [--dsn URL] [--scale medium --scale large]
       [--runs 5] [--steps indexes|all] [--runbook-before]

Per scale (default: medium and large), seeds the reference data into a scratch database,
explains the whole catalog (``pgrunbook.explain``: every query, the hot and the typical
parameter values, the median of ``--runs`` runs), applies the runbook (the indexes step, or
all steps), and explains the catalog again with the same parameter values. Prints a table
per scale (query, variant, plan before -> after, median ms before / after, ratio) and writes
benchmarks/results/query_speedups_<scale>.json.

The issue's expectation, checked at ``large``: the room-history query (hot room) goes from a
parallel sequential scan plus a sort (over 100 ms) to an index scan of
``idx_message_room_created_desc`` under 1 ms. Exit code 1 when it does not hold (the reason
is printed).

The seeded schema is Prisma's, with an index on ``Message.roomId`` and a duplicate of it (an
anomaly discovery reports). ``--runbook-before`` also measures the runbook's own "before", a
database without them: after the first "before" it DROPS those two indexes, explains again
(labelled ``runbook-before``), and then applies; with it, the expectation is checked against
that before. The "after" is then of the database without the two indexes (no critical query
uses them once the runbook's indexes exist; the table says which indexes each plan reads).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from psycopg import sql

import _harness as harness
from pgrunbook.catalog import load_catalog
from pgrunbook.change import engine
from pgrunbook.change.step import StepContext, StepOptions
from pgrunbook.change.steps import STEPS
from pgrunbook.change.steps import indexes as indexes_step
from pgrunbook.change.steps.indexes import ROOM_HISTORY_INDEX
from pgrunbook.explain import ExplainReport, QueryResult, explain_queries
from pgrunbook.explainplan import PlanSummary
from pgrunbook.profile import load_profile
from pgrunbook.resolve import find_column, find_table
from pgrunbook.seed import seed

SCALES: Final = ("medium", "large")
ROOM_HISTORY: Final = "room_history"
EXPECTATION_SCALE: Final = "large"
BEFORE_OVER_MS: Final = 100.0
AFTER_UNDER_MS: Final = 1.0
SEED: Final = "seed"  # the seeded schema as it is (indexes on Message.roomId)
RUNBOOK_BEFORE: Final = "runbook-before"  # without the seed's Message.roomId indexes

DROP_INDEX_SQL: Final = sql.SQL("DROP INDEX {}")
DB_SIZE_SQL: Final = "SELECT pg_database_size(current_database())"


def _scan_nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    out = [node] if str(node["Node Type"]).endswith("Scan") else []
    for child in node.get("Plans", []):
        out += _scan_nodes(child)
    return out


def short_shape(summary: PlanSummary) -> str:
    """``Parallel Seq Scan + Sort``, ``Index Scan using idx_a``, ``Bitmap Index Scan using
    idx_b + Sort``: the scans (parallel ones marked as EXPLAIN prints them) and the sort."""
    if summary.plan is None:
        return summary.node_type
    nodes = _scan_nodes(summary.plan)
    bitmap = any(n["Node Type"] == "Bitmap Index Scan" for n in nodes)
    parts = [
        ("Parallel " if n.get("Parallel Aware") else "")
        + str(n["Node Type"])
        + (f" using {n['Index Name']}" if "Index Name" in n else "")
        for n in nodes
        if not (bitmap and n["Node Type"] == "Bitmap Heap Scan")
    ]
    text = ", ".join(dict.fromkeys(parts)) or summary.node_type
    return text + (" + Sort" if summary.sorts else "")


def is_parallel_seq_scan_and_sort(summary: PlanSummary) -> bool:
    nodes = _scan_nodes(summary.plan) if summary.plan else []
    parallel_seq = any(n["Node Type"] == "Seq Scan" and n.get("Parallel Aware") for n in nodes)
    return parallel_seq and bool(summary.sorts)


def pinned_of(report: ExplainReport) -> dict[str, dict[str, dict[str, Any]]]:
    """Per query, per variant: the parameter values ``report`` ran with (reused after)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for r in report.results:
        out.setdefault(r.name, {})[r.variant] = dict(r.binding.values)
    return out


def drop_room_indexes(ctx: StepContext) -> list[str]:
    """Drop the indexes on ``Message`` whose only key is ``roomId`` (the seed's index and its
    duplicate); their names."""
    catalog = load_catalog(ctx.conn, ctx.schema)
    table = find_table(catalog, "Message")
    column = find_column(table, "roomId") if table is not None else None
    if table is None or column is None:
        return []
    dropped = []
    for index in table.indexes:
        if index.attnums == [column.num] and not index.is_primary and not index.is_unique:
            ctx.conn.execute(DROP_INDEX_SQL.format(sql.Identifier(table.schema, index.name)))
            dropped.append(index.name)
    return dropped


@dataclass(frozen=True)
class Row:
    before: QueryResult
    after: QueryResult
    notes: dict[str, str]  # where the parameter values came from (the first, sampled run)

    @property
    def ratio(self) -> float:
        return self.before.summary.execution_ms / max(self.after.summary.execution_ms, 0.001)

    def to_json(self) -> dict[str, Any]:
        b, a = self.before.summary, self.after.summary
        return {
            "name": self.after.name,
            "variant": self.after.variant,
            "expected_index": self.after.expected_index,
            "params": dict(self.after.binding.values),
            "param_notes": self.notes,
            "plan_before": short_shape(b),
            "plan_after": short_shape(a),
            "indexes_before": list(b.indexes),
            "indexes_after": list(a.indexes),
            "passed_before": self.before.passed,
            "passed_after": self.after.passed,
            "verdict_after": self.after.verdict,
            "median_ms_before": round(b.execution_ms, 3),
            "median_ms_after": round(a.execution_ms, 3),
            "ratio": round(self.ratio, 1),
            "buffers_before": b.buffers,
            "buffers_after": a.buffers,
            "rows": a.rows,
        }


def pair(before: ExplainReport, after: ExplainReport, sampled: ExplainReport) -> list[Row]:
    """``after``'s results with ``before``'s, and the notes of ``sampled`` (the run that
    sampled the parameter values the others reused)."""
    earlier = {(r.name, r.variant): r for r in before.results}
    notes = {(r.name, r.variant): dict(r.binding.notes) for r in sampled.results}
    return [Row(earlier[(r.name, r.variant)], r, notes.get((r.name, r.variant), {}))
            for r in after.results if (r.name, r.variant) in earlier]  # fmt: skip


def print_table(title: str, rows: Sequence[Row]) -> None:
    print(f"\n{title}")
    header = ("query", "variant", "plan before -> after", "before ms", "after ms", "ratio")
    lines = [
        (
            r.after.name,
            r.after.variant,
            f"{short_shape(r.before.summary)} -> {short_shape(r.after.summary)}",
            f"{r.before.summary.execution_ms:,.3f}",
            f"{r.after.summary.execution_ms:,.3f}",
            f"{r.ratio:,.1f}x",
        )
        for r in rows
    ]
    widths = [max(len(x) for x in col) for col in zip(header, *lines, strict=True)]
    right = {3, 4, 5}
    for line in (header, *lines):
        cells = [c.rjust(w) if i in right else c.ljust(w)
                 for i, (c, w) in enumerate(zip(line, widths, strict=True))]  # fmt: skip
        print("  " + "  ".join(cells).rstrip())


def check_expectation(rows: Sequence[Row], label: str) -> dict[str, Any]:
    """The issue's room-history expectation, on the hot room: before a parallel seq scan +
    sort over 100 ms, after an index scan of the runbook's index under 1 ms."""
    hot = [r for r in rows if r.after.name == ROOM_HISTORY and r.after.variant == "hot"]
    if not hot:
        return {"before": label, "held": False, "reasons": ["room_history (hot) did not run"]}
    b, a = hot[0].before.summary, hot[0].after.summary
    reasons = []
    if not is_parallel_seq_scan_and_sort(b):
        reasons.append(f"before is {short_shape(b)}, not a parallel seq scan + sort")
    if b.execution_ms <= BEFORE_OVER_MS:
        reasons.append(f"before took {b.execution_ms:,.3f} ms, not over {BEFORE_OVER_MS:g} ms")
    scan = f"Index Scan using {ROOM_HISTORY_INDEX}"
    if not any(p.startswith(scan) for p in a.path):
        reasons.append(f"after is {short_shape(a)}, not an index scan of {ROOM_HISTORY_INDEX}")
    if a.execution_ms >= AFTER_UNDER_MS:
        reasons.append(f"after took {a.execution_ms:,.3f} ms, not under {AFTER_UNDER_MS:g} ms")
    return {
        "before": label,
        "held": not reasons,
        "reasons": reasons,
        "plan_before": short_shape(b),
        "plan_after": short_shape(a),
        "ms_before": round(b.execution_ms, 3),
        "ms_after": round(a.execution_ms, 3),
        "hot_room": hot[0].notes.get("room_id", ""),
    }


def run_scale(
    admin: Any, tmp: Path, scale: str, runs: int, steps: str, runbook_before: bool
) -> dict[str, Any]:
    name = f"bench_speedups_{os.getpid()}_{scale}"
    profile = load_profile()
    roles = profile.roles.names() if steps == "all" else ()
    with harness.scratch(admin, [name], roles=roles):
        info = harness.create_database(admin, name)
        print(f"[{scale}] seeding ...", flush=True)
        t = time.monotonic()
        seeded = seed(info, scale=scale)
        seed_seconds = time.monotonic() - t
        print(f"[{scale}]   {seeded.total_rows:,} rows in {seed_seconds:.0f} s", flush=True)
        options = StepOptions(passwords_file=tmp / f"roles_{scale}.env")
        with engine.open_context(info, profile, options=options) as ctx:
            row = ctx.conn.execute(DB_SIZE_SQL).fetchone()
            size = int(row[0]) if row else 0

            def progress(query: str, variant: str) -> None:
                print(f"[{scale}]     {query} ({variant})", flush=True)

            print(f"[{scale}] explaining the catalog before apply ({runs} runs each) ...")
            t = time.monotonic()
            before = explain_queries(ctx.conn, ctx.schema, profile.queries, runs=runs,
                                     on_query=progress)  # fmt: skip
            explain_seconds = time.monotonic() - t
            pinned = pinned_of(before)
            befores = {SEED: before}
            dropped: list[str] = []
            if runbook_before:
                dropped = drop_room_indexes(ctx)
                print(f"[{scale}] --runbook-before: DROPPED the seed's Message.roomId indexes "
                      f"{', '.join(dropped) or '(none found)'} to measure the runbook's own "
                      "before (no index on roomId); explaining again ...", flush=True)  # fmt: skip
                befores[RUNBOOK_BEFORE] = explain_queries(
                    ctx.conn, ctx.schema, profile.queries, runs=runs, pinned=pinned
                )
            chosen = list(STEPS) if steps == "all" else [indexes_step.STEP]
            print(f"[{scale}] apply {', '.join(s.id for s in chosen)} ...", flush=True)
            t = time.monotonic()
            applied = engine.apply_steps(ctx, chosen)
            apply_seconds = time.monotonic() - t
            print(f"[{scale}]   {applied.changed} changes, {applied.refused} refused, "
                  f"{apply_seconds:.1f} s", flush=True)  # fmt: skip
            print(f"[{scale}] explaining the catalog after apply ...", flush=True)
            after = explain_queries(ctx.conn, ctx.schema, profile.queries, runs=runs,
                                    pinned=pinned)  # fmt: skip
            if steps == "all":  # roles are cluster-wide: their step is undone here
                engine.rollback_steps(ctx, [s for s in STEPS if s.id == "roles"])
    result: dict[str, Any] = {
        "scale": scale,
        "rows_seeded": seeded.total_rows,
        "seed_seconds": round(seed_seconds, 1),
        "database_bytes": size,
        "runs": runs,
        "steps": [s.id for s in chosen],
        "apply_seconds": round(apply_seconds, 1),
        "apply_changes": applied.changed,
        "apply_refused": applied.refused,
        "explain_catalog_seconds": round(explain_seconds, 1),
        "skipped": [s.to_json() for s in after.skipped],
        "dropped_for_runbook_before": dropped,
        "comparisons": {},
        "expectation": {},
    }
    for label, earlier in befores.items():
        rows = pair(earlier, after, before)
        what = (
            "before = the seeded schema as it is (with its Message.roomId indexes)"
            if label == SEED
            else f"before = WITHOUT the seed's Message.roomId indexes ({', '.join(dropped)}, "
            "dropped by --runbook-before: the runbook's own before)"
        )
        print_table(f"[{scale}] {what}; after = {' + '.join(result['steps'])} applied; "
                    f"median of {runs} runs", rows)  # fmt: skip
        result["comparisons"][label] = [r.to_json() for r in rows]
        result["expectation"][label] = check_expectation(rows, label)
    unused = [f"{r.name} ({r.variant}): {r.verdict}" for r in after.results if not r.passed]
    result["after_not_using_expected_index"] = unused
    if unused:
        print(f"[{scale}] after apply, not using the expected index: {'; '.join(unused)}")
    return result


def main() -> None:
    parser = harness.parser(__doc__)
    parser.add_argument("--dsn", default=None, help="a superuser DSN; scratch databases are made")
    parser.add_argument("--scale", action="append", choices=("tiny", "small", *SCALES),
                        help="repeat for several (default: medium and large)")  # fmt: skip
    parser.add_argument("--runs", type=int, default=5, help="runs per query; the median counts")
    parser.add_argument("--steps", choices=("indexes", "all"), default="indexes")
    parser.add_argument(
        "--runbook-before",
        action="store_true",
        help="also measure without the seed's Message.roomId indexes (DROPS them, labelled)",
    )
    args = parser.parse_args()
    scales = args.scale or list(SCALES)
    verdicts: list[str] = []
    failed = False
    with harness.server(args.dsn) as (admin, tmp):
        for scale in scales:
            result = run_scale(admin, tmp, scale, args.runs, args.steps, args.runbook_before)
            document = {
                "benchmark": "query_speedups",
                "when": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": harness.machine(),
                **result,
            }
            out = harness.write_results(f"query_speedups_{scale}.json", document)
            print(f"[{scale}] wrote {out}")
            for label, exp in result["expectation"].items():
                held = "HOLDS" if exp["held"] else "DOES NOT HOLD"
                line = (
                    f"[{scale}] room_history (hot) with before = {label}: "
                    f"{exp.get('plan_before')} {exp.get('ms_before')} ms -> "
                    f"{exp.get('plan_after')} {exp.get('ms_after')} ms: expectation {held}"
                )
                if exp["reasons"]:
                    line += " (" + "; ".join(exp["reasons"]) + ")"
                verdicts.append(line)
            if scale == EXPECTATION_SCALE:
                label = RUNBOOK_BEFORE if args.runbook_before else SEED
                failed = failed or not result["expectation"][label]["held"]
    print()
    for line in verdicts:
        print(line)
    if EXPECTATION_SCALE in scales:
        which = RUNBOOK_BEFORE if args.runbook_before else SEED
        print(f"exit code from the {EXPECTATION_SCALE} check with before = {which}: "
              f"{1 if failed else 0}")  # fmt: skip
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
