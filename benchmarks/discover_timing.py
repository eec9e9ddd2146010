"""How long ``pgrunbook discover`` takes: on the small demo data and on a big catalog.

Usage: python benchmarks/discover_timing.py [--dsn URL] [--runs 5] [--tables 1000]

Targets (issue 3): under 2 s on the ``small`` demo database; under 10 s on a synthetic
catalog of 1,000 tables and 5,000 indexes. Without --dsn it starts its own embedded
PostgreSQL in a temporary directory. Prints the figures, the slowest checks, and writes
benchmarks/results/discover_timing.json.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import _harness as harness
from pgrunbook.connect import connect
from pgrunbook.discover import DiscoveryReport, discover
from pgrunbook.dsn import ConnInfo
from pgrunbook.seed import seed
from synthetic_catalog import build


def _time(info: ConnInfo, runs: int, schema: str | None = None) -> tuple[list[float], Any]:
    seconds, report = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        report = discover(info, schema=schema)
        seconds.append(time.perf_counter() - t0)
    return seconds, report


def _summary(
    label: str, seconds: list[float], report: DiscoveryReport, target: float
) -> dict[str, Any]:
    slowest = sorted(report.checks, key=lambda c: -c.seconds)[:5]
    median = statistics.median(seconds)
    print(
        f"{label}: median {median:.2f} s, max {max(seconds):.2f} s over {len(seconds)} runs "
        f"(target < {target:g} s: {'met' if max(seconds) < target else 'MISSED'}); "
        f"{len(report.findings)} findings"
    )
    print("  slowest checks: " + ", ".join(f"{c.id} {c.seconds:.2f} s" for c in slowest))
    return {
        "label": label,
        "runs": seconds,
        "median_seconds": median,
        "max_seconds": max(seconds),
        "target_seconds": target,
        "findings": len(report.findings),
        "slowest_checks": {c.id: round(c.seconds, 3) for c in slowest},
    }


def main() -> None:
    parser = harness.parser(__doc__)
    parser.add_argument("--dsn", default=None, help="a superuser DSN; scratch databases are made")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tables", type=int, default=1000)
    args = parser.parse_args()

    results = []
    names = [f"bench_discover_small_{os.getpid()}", f"bench_discover_catalog_{os.getpid()}"]
    with harness.server(args.dsn) as (admin, _), harness.scratch(admin, names):
        small, big = (harness.create_database(admin, name) for name in names)
        print("seeding the small demo data ...", flush=True)
        seed(small, scale="small")
        seconds, report = _time(small, args.runs)
        results.append(_summary("small demo database", seconds, report, 2.0))

        print(f"building a catalog of {args.tables} tables ...", flush=True)
        with connect(big, autocommit=True) as conn:
            counts = build(conn, "app", args.tables)
        print(f"  {counts['tables']} tables, {counts['indexes']} indexes")
        seconds, report = _time(big, max(3, args.runs // 2), schema="app")
        entry = _summary(
            f"{counts['tables']} tables / {counts['indexes']} indexes", seconds, report, 10.0
        )
        results.append({**entry, **counts})

    document = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": harness.machine(),
        "results": results,
    }
    out = harness.write_results("discover_timing.json", document)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
