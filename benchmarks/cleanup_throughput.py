"""Batched cleanup vs one plain DELETE: throughput, and the app's lock waits during each.

Usage: python benchmarks/cleanup_throughput.py [--dsn URL] [--rows 1000000] [--batch-size 5000]
       [--repeat 3]

Builds a table shaped like the reference ``RefreshToken`` (uuid primary key, userId, token,
expiresAt, revokedAt, createdAt; its unique token index, its userId index and the profile's
``idx_refreshtoken_expires_active``) holding ``--rows`` tokens expired more than 7 days ago,
plus 50,000 live tokens and 20,000 expired within the last 7 days (kept by the policy). Then,
each time on the same freshly rebuilt, vacuumed and analyzed table, while an "app" thread
runs one transaction every 10 ms (insert a token; revoke all of a user's tokens, which
touches expired rows too; delete one live token) and times every statement:

1. plain: ``DELETE FROM "RefreshToken" WHERE <the policy's predicate>``, one transaction;
2. batched: ``run_cleanup`` of the built-in ``expired_refresh_tokens`` policy (resolved with
   ``resolve_policies`` from the catalog), default batch size, in key order (``by="key"``);
3. the same with ``by="blocks"`` (block ranges in physical order: the default).

Each is measured ``--repeat`` times (default 3, rounds interleaved, the table rebuilt every
time); a figure is the median run's, an app wait the worst of all runs.

Targets (issue 6): batched rows/s at least half the plain DELETE's; the app's worst
statement during the batched run under 200 ms. Every run must delete exactly ``--rows``.
Prints the figures, writes benchmarks/results/cleanup_throughput.json and exits 1 when the
default run misses a target.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import psycopg
from psycopg import sql

import _harness as harness
from pgrunbook.catalog import load_catalog
from pgrunbook.cleanup import ResolvedPolicy, resolve_policies, run_cleanup
from pgrunbook.cleanup.batches import DEFAULT_BATCH_SIZE, BatchOrder
from pgrunbook.connect import connect
from pgrunbook.dsn import ConnInfo
from pgrunbook.profile import load_profile

PACE_SECONDS: Final = 0.01  # the app starts a transaction every 10 ms
LIVE_ROWS: Final = 50_000
RECENT_ROWS: Final = 20_000  # expired, but less than 7 days ago: the policy keeps them
USERS: Final = 50_000
TARGET_RATIO: Final = 0.5
TARGET_WORST_MS: Final = 200.0

CREATE: Final = """
DROP TABLE IF EXISTS "RefreshToken";
CREATE TABLE "RefreshToken" (
    "id" UUID NOT NULL,
    "userId" UUID NOT NULL,
    "token" TEXT NOT NULL,
    "expiresAt" TIMESTAMP(3) NOT NULL,
    "revokedAt" TIMESTAMP(3),
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "RefreshToken_pkey" PRIMARY KEY ("id")
)
"""

# Deterministic rows (ids from md5 of the row number), so every rebuild holds the same data.
# Kinds by row number g: 1..rows expired 8-57 days ago; then RECENT_ROWS expired 1-6 days
# ago; then LIVE_ROWS expiring in the next 1-30 days.
FILL: Final = sql.SQL("""
INSERT INTO "RefreshToken" ("id", "userId", "token", "expiresAt", "revokedAt", "createdAt")
SELECT md5('rt' || g)::uuid,
       md5('user' || (g % {users}))::uuid,
       md5('token' || g) || md5('secret' || g),
       e.expires,
       NULL,
       e.expires - interval '7 days'
  FROM generate_series(1, {total}) g,
       LATERAL (SELECT CASE
           WHEN g <= {rows} THEN {anchor} - interval '8 days' - (g % 50) * interval '1 day'
                                 - (g % 86400) * interval '1 second'
           WHEN g <= {rows} + {recent} THEN {anchor} - (1 + g % 6) * interval '1 day'
           ELSE {anchor} + (1 + g % 30) * interval '1 day'
       END AS expires) e
""")

INDEXES: Final = (
    'CREATE UNIQUE INDEX "RefreshToken_token_key" ON "RefreshToken"("token")',
    'CREATE INDEX "RefreshToken_userId_idx" ON "RefreshToken"("userId")',
    'CREATE INDEX idx_refreshtoken_expires_active ON "RefreshToken"("expiresAt") '
    'WHERE "revokedAt" IS NULL',
    'VACUUM (ANALYZE) "RefreshToken"',
    "CHECKPOINT",
)

LIVE_IDS: Final = sql.SQL("SELECT md5('rt' || g)::uuid FROM generate_series({first}, {last}) g")
PLAIN_DELETE: Final = sql.SQL("DELETE FROM {table} WHERE {where}")
COUNT: Final = sql.SQL("SELECT count(*) FROM {table} WHERE {where}")

APP_INSERT: Final = """
INSERT INTO "RefreshToken" ("id", "userId", "token", "expiresAt", "createdAt")
VALUES (gen_random_uuid(), md5('user' || %(user)s)::uuid,
        md5(random()::text) || md5(random()::text),
        (now() AT TIME ZONE 'UTC') + interval '7 days', now() AT TIME ZONE 'UTC')
"""
APP_REVOKE: Final = """
UPDATE "RefreshToken" SET "revokedAt" = now() AT TIME ZONE 'UTC'
 WHERE "userId" = md5('user' || %(user)s)::uuid AND "revokedAt" IS NULL
"""
APP_DELETE: Final = 'DELETE FROM "RefreshToken" WHERE "id" = %(id)s'


@dataclass
class Sample:
    at: float  # monotonic time the statement ended
    seconds: float
    kind: str


def _app(conninfo: str, password: str | None, live_ids: list[Any], stop: Any, out: Any) -> None:
    """The app client, in its own process (not sharing the GIL with the cleanup): one
    transaction every PACE_SECONDS until ``stop`` is set; sends its samples and failures."""
    rng = random.Random(6)
    samples: list[tuple[float, float, str]] = []
    failures: list[str] = []
    with psycopg.connect(conninfo, password=password, application_name="app") as conn:
        next_at = time.monotonic()
        while not stop.is_set():
            next_at += PACE_SECONDS
            choice = rng.random()
            user = rng.randrange(USERS)
            if choice < 0.5:
                kind, query, params = "insert", APP_INSERT, {"user": user}
            elif choice < 0.8 or not live_ids:
                kind, query, params = "revoke", APP_REVOKE, {"user": user}
            else:
                kind, query, params = "delete", APP_DELETE, {"id": live_ids.pop()}
            try:
                with conn.transaction():
                    t0 = time.monotonic()  # CLOCK_MONOTONIC: the same clock in every process
                    conn.execute(query.encode(), params)
                    t1 = time.monotonic()
                samples.append((t1, t1 - t0, kind))
            except psycopg.Error as exc:
                failures.append(f"{type(exc).__name__}: {str(exc).strip()[:200]}")
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                next_at = time.monotonic()
    out.put((samples, failures))


@dataclass
class App:
    """One app client (a separate process) writing to the table while the block runs,
    timing every statement."""

    info: ConnInfo
    live_ids: list[Any]
    samples: list[Sample] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def __enter__(self) -> App:
        spawn = multiprocessing.get_context("spawn")  # not fork: no inherited connections
        self._stop = spawn.Event()
        self._out: multiprocessing.Queue[Any] = spawn.Queue()
        self._process = spawn.Process(
            target=_app,
            args=(self.info.conninfo(), self.info.password, self.live_ids, self._stop, self._out),
            daemon=True,
        )
        self._process.start()
        time.sleep(2.0)  # start and warm up before the measured window
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.5)
        self._stop.set()
        samples, self.failures = self._out.get(timeout=60)
        self._process.join()
        self.samples = [Sample(*sample) for sample in samples]

    def worst(self, start: float, end: float) -> dict[str, Any]:
        """The statements that overlapped [start, end]: how many, the worst, by kind."""
        window = [s for s in self.samples if s.at >= start and s.at - s.seconds <= end]
        if not window:
            return {"statements": 0, "max_ms": 0.0, "worst_kind": None}
        worst = max(window, key=lambda s: s.seconds)
        ms = sorted(s.seconds * 1000 for s in window)
        return {
            "statements": len(window),
            "median_ms": round(ms[len(ms) // 2], 2),
            "p99_ms": round(ms[max(int(len(ms) * 0.99) - 1, 0)], 2),
            "max_ms": round(worst.seconds * 1000, 2),
            "worst_kind": worst.kind,
        }


def build(info: ConnInfo, rows: int, anchor: datetime) -> None:
    """(Re)create the table with exactly the same rows, indexes, vacuumed and analyzed."""
    with connect(info, autocommit=True) as conn:
        for statement in CREATE.split(";"):
            conn.execute(statement.encode())
        conn.execute(
            FILL.format(
                users=sql.Literal(USERS),
                total=sql.Literal(rows + RECENT_ROWS + LIVE_ROWS),
                rows=sql.Literal(rows),
                recent=sql.Literal(RECENT_ROWS),
                anchor=sql.Literal(anchor.replace(tzinfo=None)),
            )
        )
        for statement in INDEXES:
            conn.execute(statement.encode())


def live_ids(info: ConnInfo, rows: int) -> list[Any]:
    first = rows + RECENT_ROWS + 1
    query = LIVE_IDS.format(first=sql.Literal(first), last=sql.Literal(first + LIVE_ROWS - 1))
    with connect(info) as conn:
        ids = [r[0] for r in conn.execute(query)]
    random.Random(7).shuffle(ids)
    return ids


def policy_of(info: ConnInfo) -> ResolvedPolicy:
    with connect(info) as conn:
        resolved, skipped = resolve_policies(
            load_catalog(conn, "public"), load_profile().retention, ["expired_refresh_tokens"]
        )
    assert not skipped and len(resolved) == 1, skipped
    return resolved[0]


def matching(info: ConnInfo, policy: ResolvedPolicy) -> int:
    with connect(info) as conn:
        row = conn.execute(COUNT.format(table=policy.ident, where=policy.predicate)).fetchone()
    assert row is not None and isinstance(row[0], int)
    return row[0]


def measured(info: ConnInfo, rows: int, work: Callable[[], int]) -> dict[str, Any]:
    """Run ``work`` (returns the rows it deleted) with the app writing alongside."""
    with App(info, live_ids(info, rows)) as app:
        start = time.monotonic()
        deleted = work()
        end = time.monotonic()
    seconds = end - start
    return {
        "deleted": deleted,
        "seconds": round(seconds, 3),
        "rows_per_second": round(deleted / seconds, 1),
        "app": app.worst(start, end),
        "app_failures": len(app.failures),
        "app_failure_samples": app.failures[:3],
    }


def measured_plain(info: ConnInfo, rows: int, policy: ResolvedPolicy) -> dict[str, Any]:
    query = PLAIN_DELETE.format(table=policy.ident, where=policy.predicate)
    with connect(info, autocommit=True) as conn:
        return measured(info, rows, lambda: conn.execute(query).rowcount)


def measured_cleanup(
    info: ConnInfo, rows: int, policy: ResolvedPolicy, batch_size: int, by: BatchOrder
) -> dict[str, Any]:
    batches: list[int] = []
    with connect(info, autocommit=True) as conn:

        def work() -> int:
            result = run_cleanup(
                conn, policy, batch_size=batch_size, by=by,
                on_batch=lambda p: batches.append(p.batch),
            )  # fmt: skip
            assert not result.interrupted
            return result.deleted

        return {**measured(info, rows, work), "batches": len(batches)}


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median run (by time), with every run's seconds and the worst app wait of all."""
    ordered = sorted(runs, key=lambda r: r["seconds"])
    median = ordered[(len(ordered) - 1) // 2]
    worst = max((r["app"] for r in runs), key=lambda a: a["max_ms"])
    seconds = [median["seconds"]] + [r["seconds"] for r in runs if r is not median]
    return {**median, "all_seconds": seconds, "app": worst}


def main() -> None:
    parser = harness.parser(__doc__)
    parser.add_argument("--dsn", default=None, help="a superuser DSN; a scratch database is made")
    parser.add_argument("--rows", type=int, default=1_000_000, help="expired rows to delete")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument(
        "--repeat", type=int, default=3, help="rounds; each figure is the median round's"
    )
    args = parser.parse_args()

    name = f"bench_cleanup_{os.getpid()}"
    anchor = datetime.now(UTC)
    with harness.server(args.dsn) as (admin, _tmp), harness.scratch(admin, [name]):
        info = harness.create_database(admin, name)
        print(f"building {args.rows:,} expired + {RECENT_ROWS + LIVE_ROWS:,} kept tokens ...",
              flush=True)  # fmt: skip
        t = time.monotonic()
        build(info, args.rows, anchor)
        print(f"  built in {time.monotonic() - t:.1f} s", flush=True)
        policy = policy_of(info)
        assert matching(info, policy) == args.rows

        runs: dict[str, list[dict[str, Any]]] = {"plain": [], "key": [], "blocks": []}
        for round_ in range(1, args.repeat + 1):
            for kind in runs:
                if any(runs.values()):
                    build(info, args.rows, anchor)  # the same rows again
                    assert matching(info, policy) == args.rows
                what = "plain DELETE" if kind == "plain" else f"run_cleanup by {kind}"
                print(f"round {round_}: {what}, app writing every 10 ms ...", flush=True)
                if kind == "plain":
                    runs[kind].append(measured_plain(info, args.rows, policy))
                else:
                    by: BatchOrder = "key" if kind == "key" else "blocks"
                    runs[kind].append(
                        measured_cleanup(info, args.rows, policy, args.batch_size, by)
                    )
        plain_result = summary(runs["plain"])
        batched = {by: summary(runs[by]) for by in ("key", "blocks")}

    exact = all(r["deleted"] == args.rows for kind in runs.values() for r in kind)
    no_failures = all(r["app_failures"] == 0 for kind in runs.values() for r in kind)
    for r in batched.values():
        r["ratio"] = round(r["rows_per_second"] / plain_result["rows_per_second"], 3)
        r["met_ratio"] = r["ratio"] >= TARGET_RATIO
        r["met_app_wait"] = r["app"]["max_ms"] < TARGET_WORST_MS
    default = batched["blocks"]

    width = 34
    print()
    print(f"{'rows (expired > 7 days)':<{width}} {args.rows:,}")
    print(f"{'runs (s), median first':<{width}} plain {plain_result['all_seconds']}, "
          f"by key {batched['key']['all_seconds']}, "
          f"by blocks {batched['blocks']['all_seconds']}")  # fmt: skip
    print(f"{'plain DELETE':<{width}} {plain_result['seconds']:.2f} s, "
          f"{plain_result['rows_per_second']:,.0f} rows/s; app worst "
          f"{plain_result['app']['max_ms']:.1f} ms ({plain_result['app']['worst_kind']}, "
          f"{plain_result['app']['statements']} statements)")  # fmt: skip
    for order, r in batched.items():
        label = f"run_cleanup by {order}" + (" (default)" if order == "blocks" else "")
        print(f"{label:<{width}} {r['seconds']:.2f} s, {r['rows_per_second']:,.0f} rows/s "
              f"({r['batches']} batches); ratio {r['ratio']:.2f} (target >= {TARGET_RATIO}: "
              f"{'met' if r['met_ratio'] else 'MISSED'}); app worst {r['app']['max_ms']:.1f} "
              f"ms ({r['app']['worst_kind']}, {r['app']['statements']} statements; target < "
              f"{TARGET_WORST_MS:.0f} ms: {'met' if r['met_app_wait'] else 'MISSED'})")  # fmt: skip
    print(f"{'deleted exactly the rows':<{width}} {exact}")
    print(f"{'app failures':<{width}} {0 if no_failures else 'SOME'}")
    print(f"targets (default run_cleanup): ratio {'met' if default['met_ratio'] else 'MISSED'}, "
          f"app wait {'met' if default['met_app_wait'] else 'MISSED'}")  # fmt: skip

    document = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": harness.machine(),
        "rows": args.rows,
        "kept_rows": RECENT_ROWS + LIVE_ROWS,
        "batch_size": args.batch_size,
        "pace_seconds": PACE_SECONDS,
        "policy": policy.name,
        "predicate": policy.predicate.as_string(),
        "plain": plain_result,
        "batched": batched,
        "targets": {
            "ratio": TARGET_RATIO,
            "app_worst_ms": TARGET_WORST_MS,
            "deleted_exactly": exact,
            "no_app_failures": no_failures,
        },
    }
    out = harness.write_results("cleanup_throughput.json", document)
    print(f"wrote {out}")
    if not (default["met_ratio"] and default["met_app_wait"] and exact and no_failures):
        sys.exit(1)


if __name__ == "__main__":
    main()
