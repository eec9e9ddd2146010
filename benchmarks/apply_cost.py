"""Apply cost against the physical floor: ``pgrunbook apply indexes`` on an idle database
against plain ``CREATE INDEX`` of the same 15 indexes on the same data.

Usage: python benchmarks/apply_cost.py [--dsn URL] [--scale medium] [--rounds 2]

Seeds the reference data at ``--scale`` (medium: ~4.8 million rows), repairs the injected
constraint violations (set-up, so that the constraints step adds all twelve constraints),
then, ``--rounds`` times, on the idle database:

1. the floor: each of the profile's indexes built with a plain, non-concurrent
   ``CREATE INDEX`` (same columns, order and predicate as the indexes step builds), timed one
   by one, then dropped;
2. ``apply`` of the indexes step (``CREATE INDEX CONCURRENTLY``, journaled, with the lock
   checks), timed in total and per index, then rolled back (``pgrunbook rollback indexes``).

Then once: ``apply`` of all five steps (indexes, triggers, audit, roles, constraints), timed
in total and per step. Prints the ratio (apply / plain) per index and in total (the median
round's figures) and writes benchmarks/results/apply_cost.json.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from psycopg import sql

import _harness as harness
from apply_online import REPAIRS
from pgrunbook.change import engine
from pgrunbook.change.step import StepContext, StepOptions
from pgrunbook.change.steps import STEPS
from pgrunbook.change.steps import indexes as indexes_step
from pgrunbook.change.steps.indexes.wanted import Wanted, want
from pgrunbook.connect import connect
from pgrunbook.dsn import ConnInfo
from pgrunbook.profile import load_profile
from pgrunbook.seed import seed

CREATE_SQL: Final = sql.SQL("CREATE INDEX {} ON {} {}")
WHERE_SQL: Final = sql.SQL(" WHERE {}")
DROP_SQL: Final = sql.SQL("DROP INDEX {}")


def wanted_indexes(ctx: StepContext) -> list[Wanted]:
    """The profile's indexes in this database's names (all 15 on the reference schema)."""
    out = []
    for spec in ctx.profile.indexes:
        table = ctx.table(spec.table)
        wanted = want(spec, table) if table is not None else f"no table {spec.table}"
        if isinstance(wanted, str):
            raise SystemExit(f"cannot build {spec.name}: {wanted}")
        out.append(wanted)
    return out


def plain_create(w: Wanted) -> sql.Composed:
    """``CREATE INDEX name ON table (columns) [WHERE predicate]``: what the step builds,
    without CONCURRENTLY."""
    statement = CREATE_SQL.format(
        sql.Identifier(w.name), sql.Identifier(w.table.schema, w.table.name), w.rendered.columns
    )
    if w.rendered.predicate is not None:
        statement += WHERE_SQL.format(w.rendered.predicate)
    return statement


def floor_round(ctx: StepContext, wanted: list[Wanted]) -> dict[str, float]:
    """Each index built plainly, timed; then all dropped. Seconds per index."""
    seconds = {}
    for w in wanted:
        t = time.perf_counter()
        ctx.conn.execute(plain_create(w))
        seconds[w.name] = time.perf_counter() - t
    for w in wanted:
        ctx.conn.execute(DROP_SQL.format(sql.Identifier(w.table.schema, w.name)))
    return seconds


def apply_round(ctx: StepContext) -> tuple[float, dict[str, float]]:
    """``apply indexes``, timed in total and per index; then rolled back."""
    t = time.perf_counter()
    report = engine.apply_steps(ctx, [indexes_step.STEP])
    total = time.perf_counter() - t
    per_index = {}
    for run in report.runs:
        for result in run.results:
            ref = result.operation.ref
            if ref is not None and result.skipped is None:
                per_index[ref.name] = result.seconds
    engine.rollback_steps(ctx, [indexes_step.STEP])
    return total, per_index


def all_steps(ctx: StepContext) -> dict[str, Any]:
    t = time.perf_counter()
    report = engine.apply_steps(ctx, STEPS)
    total = time.perf_counter() - t
    per_step = {run.plan.step: round(sum(r.seconds for r in run.results), 2) for run in report.runs}
    engine.rollback_steps(ctx, [s for s in STEPS if s.id == "roles"])  # cluster-wide
    return {
        "seconds": round(total, 2),
        "operations_seconds_per_step": per_step,
        "changes": report.changed,
        "refused": report.refused,
    }


def prepare(info: ConnInfo) -> None:
    with connect(info, autocommit=True) as conn:
        for repair in REPAIRS:
            conn.execute(repair.encode())
        conn.execute("VACUUM (ANALYZE)")


def main() -> None:
    parser = harness.parser(__doc__)
    parser.add_argument("--dsn", default=None, help="a superuser DSN; a scratch database is made")
    parser.add_argument("--scale", default="medium")
    parser.add_argument("--rounds", type=int, default=2, help="floor + apply rounds (median)")
    args = parser.parse_args()

    name = f"bench_apply_cost_{os.getpid()}"
    profile = load_profile()
    with (
        harness.server(args.dsn) as (admin, tmp),
        harness.scratch(admin, [name], roles=profile.roles.names()),
    ):
        info = harness.create_database(admin, name)
        print(f"seeding {args.scale} data ...", flush=True)
        t = time.monotonic()
        seeded = seed(info, scale=args.scale)
        print(f"  {seeded.total_rows:,} rows in {time.monotonic() - t:.0f} s", flush=True)
        prepare(info)
        options = StepOptions(passwords_file=Path(tmp) / "roles.env")
        floors: list[dict[str, float]] = []
        applies: list[tuple[float, dict[str, float]]] = []
        with engine.open_context(info, profile, options=options) as ctx:
            wanted = wanted_indexes(ctx)
            for n in range(args.rounds):
                floors.append(floor_round(ctx, wanted))
                ctx.refresh()
                applies.append(apply_round(ctx))
                ctx.refresh()
                print(f"  round {n + 1}: plain {sum(floors[-1].values()):.2f} s, "
                      f"apply indexes {applies[-1][0]:.2f} s", flush=True)  # fmt: skip
            print("apply, all five steps ...", flush=True)
            everything = all_steps(ctx)

    # the median round (by total) of each
    floor = sorted(floors, key=lambda f: sum(f.values()))[(len(floors) - 1) // 2]
    apply_total, apply_per = sorted(applies, key=lambda a: a[0])[(len(applies) - 1) // 2]
    floor_total = sum(floor.values())
    rows = []
    print(f"\n{len(wanted)} indexes, {args.scale} data ({seeded.total_rows:,} rows), median of "
          f"{args.rounds} rounds")  # fmt: skip
    print(f"  {'index':<36} {'table':<18} {'plain s':>8} {'apply s':>8} {'ratio':>6}")
    for w in wanted:
        plain_s, apply_s = floor[w.name], apply_per.get(w.name, float("nan"))
        ratio = apply_s / plain_s if plain_s else float("nan")
        rows.append(
            {
                "index": w.name,
                "table": w.table.name,
                "plain_seconds": round(plain_s, 3),
                "apply_seconds": round(apply_s, 3),
                "ratio": round(ratio, 2),
                "plain_seconds_all_rounds": [round(f[w.name], 3) for f in floors],
                "apply_seconds_all_rounds": [round(a[1].get(w.name, 0.0), 3) for a in applies],
            }
        )
        print(f"  {w.name:<36} {w.table.name:<18} {plain_s:>8.3f} {apply_s:>8.3f} {ratio:>5.2f}x")
    builds = sum(apply_per.values())
    print(f"  {'total (sum of builds)':<55} {floor_total:>8.3f} {builds:>8.3f} "
          f"{builds / floor_total:>5.2f}x")  # fmt: skip
    print(f"  {'total (whole apply indexes)':<55} {floor_total:>8.3f} {apply_total:>8.3f} "
          f"{apply_total / floor_total:>5.2f}x")  # fmt: skip
    print(f"apply of all five steps: {everything['seconds']} s ({everything['changes']} changes, "
          f"{everything['refused']} refused; operations per step "
          f"{everything['operations_seconds_per_step']}): "
          f"{everything['seconds'] / floor_total:.2f}x the plain CREATE INDEX sum")  # fmt: skip

    document = {
        "benchmark": "apply_cost",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": harness.machine(),
        "scale": args.scale,
        "rows": seeded.total_rows,
        "rounds": args.rounds,
        "indexes": rows,
        "plain_total_seconds": round(floor_total, 2),
        "apply_indexes_builds_seconds": round(builds, 2),
        "apply_indexes_total_seconds": round(apply_total, 2),
        "ratio_builds": round(builds / floor_total, 2),
        "ratio_total": round(apply_total / floor_total, 2),
        "plain_total_all_rounds": [round(sum(f.values()), 2) for f in floors],
        "apply_total_all_rounds": [round(a[0], 2) for a in applies],
        "apply_all_steps": everything,
        "ratio_all_steps": round(everything["seconds"] / floor_total, 2),
    }
    out = harness.write_results("apply_cost.json", document)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
