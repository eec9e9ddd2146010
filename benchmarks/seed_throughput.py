"""How fast ``pgrunbook seed`` loads data: rows/s of the COPY phase and overall.

Usage: python benchmarks/seed_throughput.py [--scale medium] [--naming prisma] [--dsn URL]

Without --dsn it starts its own embedded PostgreSQL in a temporary directory. Prints a table
and writes benchmarks/results/seed_<scale>.json.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

import _harness as harness
from pgrunbook.seed import seed


def main() -> None:
    parser = harness.parser(__doc__)
    parser.add_argument("--scale", default="medium")
    parser.add_argument("--naming", default="prisma")
    parser.add_argument("--dsn", default=None, help="a superuser DSN; a scratch database is made")
    args = parser.parse_args()

    name = f"bench_seed_{os.getpid()}"
    with harness.server(args.dsn) as (admin, _), harness.scratch(admin, [name]):
        info = harness.create_database(admin, name)
        started = time.perf_counter()
        report = seed(info, scale=args.scale, naming=args.naming)
        wall = time.perf_counter() - started

    secs = report.seconds
    result = {
        "benchmark": "seed_throughput",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": harness.machine(),
        "scale": args.scale,
        "naming": args.naming,
        "rows": report.total_rows,
        "copy_seconds": round(secs["copy"], 2),
        "keys_and_indexes_seconds": round(secs["keys_and_indexes"], 2),
        "vacuum_analyze_seconds": round(secs["vacuum_analyze"], 2),
        "total_seconds": round(wall, 2),
        "copy_rows_per_second": round(report.load_rows_per_second),
        "overall_rows_per_second": round(report.total_rows / wall),
    }
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(
            f"{key:<{width}}  {value:,}" if isinstance(value, int) else f"{key:<{width}}  {value}"
        )
    harness.write_results(f"seed_{args.scale}.json", result)


if __name__ == "__main__":
    main()
