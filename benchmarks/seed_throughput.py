"""How fast ``pgrunbook seed`` loads data: rows/s of the COPY phase and overall.

Usage: python benchmarks/seed_throughput.py [--scale medium] [--naming prisma] [--dsn URL]

Without --dsn it starts its own embedded PostgreSQL in a temporary directory. Prints a table
and writes benchmarks/results/seed_<scale>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from psycopg import sql

from pgrunbook.connect import connect
from pgrunbook.dsn import parse_dsn
from pgrunbook.embedded import LocalServer
from pgrunbook.seed import seed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--scale", default="medium")
    parser.add_argument("--naming", default="prisma")
    parser.add_argument("--dsn", default=None, help="a superuser DSN; a scratch database is made")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="pgrunbook-bench-") as tmp:
        server = None
        if args.dsn:
            admin = parse_dsn(args.dsn)
        else:
            server = LocalServer(Path(tmp) / "pgdata")
            admin = server.start()
        name = f"bench_seed_{os.getpid()}"
        with connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            started = time.perf_counter()
            report = seed(admin.with_params(dbname=name), scale=args.scale, naming=args.naming)
            wall = time.perf_counter() - started
        finally:
            with connect(admin, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )
            if server is not None:
                server.stop()

    secs = report.seconds
    result = {
        "benchmark": "seed_throughput",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
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
    out = Path(__file__).parent / "results" / f"seed_{args.scale}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
