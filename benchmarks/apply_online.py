"""Online safety of ``pgrunbook apply``: the app's latency while the runbook is applied.

Usage: python benchmarks/apply_online.py [--dsn URL] [--scale medium] [--clients 4]
       [--blocker-seconds 20]

Seeds the reference data at ``--scale`` (medium: ~4.8 million rows), repairs the injected
constraint violations (set-up, so that ``apply`` adds and validates all twelve constraints),
and then, on two copies of that database:

1. plain: several app clients insert messages, send gifts (a gift send, two wallet updates
   and a wallet transaction in one transaction) and update wallets at a steady pace; first
   without pgrunbook (the baseline window), then while ``apply`` runs all five steps;
2. with a blocker: the same, plus a session that holds a transaction open for
   ``--blocker-seconds`` after reading ``Wallet`` and ``Message``.

Targets (issue 4): no app transaction fails; the app's worst statement latency during
``apply`` is within 20 ms of its baseline worst without the blocker, and under 150 ms with
it; ``apply`` finishes after the blocker ends. Prints the figures and writes
benchmarks/results/apply_online.json.
"""

from __future__ import annotations

import os
import random
import statistics
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import psycopg

import _harness as harness
from pgrunbook.change import engine
from pgrunbook.change.operation import Operation
from pgrunbook.change.runner import ApplyPolicy
from pgrunbook.change.step import StepOptions
from pgrunbook.change.steps import STEPS
from pgrunbook.connect import connect
from pgrunbook.dsn import ConnInfo
from pgrunbook.profile import load_profile
from pgrunbook.reference import Naming
from pgrunbook.seed import seed
from pgrunbook.seed.anomalies import CHECKS, count_query

PACE_SECONDS: Final = 0.02  # each client starts a transaction every 20 ms
BASELINE_SECONDS: Final = 30.0

# Set-up only: make the data satisfy the runbook's constraints (the product's way is
# `pgrunbook fix constraints`, which needs the audit step first).
REPAIRS: Final = (
    'UPDATE "Wallet" SET balance = 0 WHERE balance < 0',
    'UPDATE "Wallet" SET diamonds = 0 WHERE diamonds < 0',
    'DELETE FROM "WalletTransaction" WHERE amount = 0',
    'DELETE FROM "Follow" WHERE "followerId" = "followingId"',
    'DELETE FROM "GiftSend" WHERE "senderId" = "receiverId"',
    """UPDATE "User" SET email = 'invalid+' || id || '@example.invalid'
        WHERE email !~ '^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\\.[A-Za-z]{2,}$'""",
    """UPDATE "User" SET username = 'user_' || left(replace(id::text, '-', ''), 20)
        WHERE username !~ '^[A-Za-z0-9_]{3,30}$'""",
    'UPDATE "Room" SET "currentMembers" = "maxMembers" WHERE "currentMembers" > "maxMembers"',
)

INSERT_MESSAGE: Final = """
INSERT INTO "Message" (id, "roomId", "senderId", content, type, "isDeleted", "createdAt",
                       "updatedAt")
VALUES (gen_random_uuid(), %(room)s, %(user)s, 'hello', 'TEXT', false,
        now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC')
"""
INSERT_GIFT: Final = """
INSERT INTO "GiftSend" (id, "giftId", "senderId", "receiverId", "roomId", quantity,
                        "totalPrice", "createdAt")
VALUES (gen_random_uuid(), %(gift)s, %(sender)s, %(receiver)s, %(room)s, 1, 10,
        now() AT TIME ZONE 'UTC')
"""
PAY: Final = """
UPDATE "Wallet" SET balance = balance - 10, "updatedAt" = now() AT TIME ZONE 'UTC'
 WHERE "userId" = %(sender)s AND balance >= 10
"""
EARN: Final = """
UPDATE "Wallet" SET diamonds = diamonds + 10, "updatedAt" = now() AT TIME ZONE 'UTC'
 WHERE "userId" = %(receiver)s
"""
LEDGER: Final = """
INSERT INTO "WalletTransaction" (id, "walletId", type, amount, "createdAt")
SELECT gen_random_uuid(), id, 'GIFT_SENT', -10, now() AT TIME ZONE 'UTC'
  FROM "Wallet" WHERE "userId" = %(sender)s
"""
TOP_UP: Final = """
UPDATE "Wallet" SET balance = balance + 100, "updatedAt" = now() AT TIME ZONE 'UTC'
 WHERE "userId" = %(user)s
"""


@dataclass
class Sample:
    at: float  # monotonic time the statement ended
    seconds: float
    kind: str


@dataclass
class Workload:
    """App clients running until stopped; every statement's latency is recorded."""

    info: ConnInfo
    clients: int
    ids: dict[str, list[Any]]
    samples: list[Sample] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        for n in range(self.clients):
            thread = threading.Thread(target=self._client, args=(n,), daemon=True)
            thread.start()
            self.threads.append(thread)

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()

    def _timed(self, conn: psycopg.Connection[Any], kind: str, query: str, **params: Any) -> None:
        t0 = time.monotonic()
        conn.execute(query, params)
        t1 = time.monotonic()
        with self.lock:
            self.samples.append(Sample(t1, t1 - t0, kind))

    def _client(self, n: int) -> None:
        rng = random.Random(n)
        users, rooms, gifts = self.ids["users"], self.ids["rooms"], self.ids["gifts"]
        with psycopg.connect(self.info.conninfo(), application_name=f"app-{n}") as conn:
            next_at = time.monotonic()
            while not self.stop.is_set():
                next_at += PACE_SECONDS
                user, other = rng.sample(users, 2)
                try:
                    choice = rng.random()
                    if choice < 0.5:
                        with conn.transaction():
                            self._timed(conn, "message", INSERT_MESSAGE,
                                        room=rng.choice(rooms), user=user)  # fmt: skip
                    elif choice < 0.85:
                        with conn.transaction():
                            args = {"sender": user, "receiver": other}
                            self._timed(conn, "gift", INSERT_GIFT, gift=rng.choice(gifts),
                                        room=rng.choice(rooms), **args)  # fmt: skip
                            self._timed(conn, "wallet", PAY, **args)
                            self._timed(conn, "wallet", EARN, **args)
                            self._timed(conn, "ledger", LEDGER, **args)
                    else:
                        with conn.transaction():
                            self._timed(conn, "wallet", TOP_UP, user=user)
                except psycopg.Error as exc:
                    with self.lock:
                        self.failures.append(f"{type(exc).__name__}: {str(exc).strip()[:200]}")
                delay = next_at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                else:
                    next_at = time.monotonic()

    def window(self, start: float, end: float) -> list[Sample]:
        with self.lock:
            return [s for s in self.samples if start <= s.at <= end]


def _stats(samples: list[Sample]) -> dict[str, Any]:
    ms = sorted(s.seconds * 1000 for s in samples)
    if not ms:
        return {"statements": 0}
    worst = max(samples, key=lambda s: s.seconds)
    return {
        "statements": len(ms),
        "median_ms": round(statistics.median(ms), 2),
        "p99_ms": round(ms[int(len(ms) * 0.99) - 1], 2),
        "max_ms": round(ms[-1], 2),
        "worst_kind": worst.kind,
    }


def _ids(info: ConnInfo) -> dict[str, list[Any]]:
    with connect(info) as conn:
        return {
            "users": [r[0] for r in conn.execute(
                'SELECT "userId" FROM "Wallet" ORDER BY random() LIMIT 2000')],
            "rooms": [r[0] for r in conn.execute('SELECT id FROM "Room" LIMIT 500')],
            "gifts": [r[0] for r in conn.execute('SELECT id FROM "Gift"')],
        }  # fmt: skip


def _blocker(info: ConnInfo, seconds: float, ready: threading.Event, ended: list[float]) -> None:
    with psycopg.connect(info.conninfo(), application_name="long-reader") as conn:
        conn.execute('SELECT count(*) FROM "Wallet"')
        conn.execute('SELECT count(*) FROM (SELECT 1 FROM "Message" LIMIT 1000) m')
        ready.set()
        time.sleep(seconds)
        conn.rollback()
        ended.append(time.monotonic())


def _run(info: ConnInfo, clients: int, blocker_seconds: float, tmp: Path) -> dict[str, Any]:
    ids = _ids(info)
    app = Workload(info, clients, ids)
    app.start()
    t0 = time.monotonic()
    time.sleep(BASELINE_SECONDS)
    baseline_end = time.monotonic()
    ended: list[float] = []
    blocker = None
    if blocker_seconds:
        ready = threading.Event()
        blocker = threading.Thread(target=_blocker, args=(info, blocker_seconds, ready, ended))
        blocker.start()
        ready.wait()
    events: list[str] = []
    locking: list[list[float]] = []  # [start, end] of operations whose lock can block the app

    def on_event(event: str, op: Operation, text: str) -> None:
        events.append(event)
        if event == "running" and op.blocks_app:
            locking.append([time.monotonic(), float("inf")])
        elif event == "done" and locking and locking[-1][1] == float("inf"):
            locking[-1][1] = time.monotonic()

    apply_start = time.monotonic()
    options = StepOptions(passwords_file=tmp / "roles.env")
    with engine.open_context(info, load_profile(), options=options) as ctx:
        report = engine.apply_steps(
            ctx,
            STEPS,
            policy=ApplyPolicy(),
            report=on_event,
        )
        apply_end = time.monotonic()
        # roles are cluster-wide: drop them so the next run creates them again
        engine.rollback_steps(ctx, [s for s in STEPS if s.id == "roles"])
    time.sleep(2)
    app.finish()
    if blocker is not None:
        blocker.join()
    baseline = _stats(app.window(t0 + 2, baseline_end))
    during_samples = app.window(apply_start, apply_end)
    during = _stats(during_samples)
    # statements that ran while an app-blocking lock was being asked for or held
    overlapping = [
        x for x in during_samples
        if any(x.at - x.seconds <= end and x.at >= start for start, end in locking)
    ]  # fmt: skip
    during["under_blocking_locks"] = {**_stats(overlapping), "operations": len(locking)}
    return {
        "apply_seconds": round(apply_end - apply_start, 2),
        "changes": report.changed,
        "refused": report.refused,
        "waits": events.count("waiting"),
        "retries": events.count("retrying"),
        "baseline": baseline,
        "during_apply": during,
        "failures": len(app.failures),
        "failure_samples": app.failures[:5],
        "blocker_seconds": blocker_seconds,
        "apply_finished_after_blocker": (apply_end > ended[0]) if ended else None,
        "blocker_ended_after_start_seconds": round(ended[0] - apply_start, 2) if ended else None,
    }


def main() -> None:
    parser = harness.parser(__doc__)
    parser.add_argument("--dsn", default=None, help="a superuser DSN; scratch databases are made")
    parser.add_argument("--scale", default="medium")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--blocker-seconds", type=float, default=20.0)
    args = parser.parse_args()

    base = f"bench_online_{os.getpid()}"
    names = [base, f"{base}_plain", f"{base}_blocked"]
    with (
        harness.server(args.dsn) as (admin, tmp),
        harness.scratch(admin, names, roles=("app_user", "app_readonly", "app_admin")),
    ):
        info = harness.create_database(admin, base)
        print(f"seeding {args.scale} data ...", flush=True)
        t = time.monotonic()
        seeded = seed(info, scale=args.scale)
        print(f"  {seeded.total_rows:,} rows in {time.monotonic() - t:.0f} s", flush=True)
        with connect(info, autocommit=True) as conn:
            for repair in REPAIRS:
                conn.execute(repair.encode())
            left = {c.kind: conn.execute(count_query(c, Naming.PRISMA)).fetchone()
                    for c in CHECKS if c.table in ("Wallet", "User")}  # fmt: skip
            conn.execute("VACUUM (ANALYZE)")
        print(f"  repaired the injected violations ({left})", flush=True)
        for name in names[1:]:
            harness.create_database(admin, name, template=base)
        results = {}
        for name, blocker in ((names[1], 0.0), (names[2], args.blocker_seconds)):
            label = "with blocker" if blocker else "plain"
            print(f"run {label}: {args.clients} clients, apply all steps ...", flush=True)
            result = _run(admin.with_params(dbname=name), args.clients, blocker, tmp)
            results[label] = result
            b, d = result["baseline"], result["during_apply"]
            print(
                f"  apply {result['apply_seconds']} s, {result['changes']} changes, "
                f"{result['waits']} waits, {result['retries']} retries; "
                f"app failures {result['failures']}"
            )
            print(
                f"  baseline worst {b['max_ms']} ms (p99 {b['p99_ms']}, median "
                f"{b['median_ms']}, {b['statements']} statements); during apply worst "
                f"{d['max_ms']} ms (p99 {d['p99_ms']}, median {d['median_ms']}, "
                f"{d['statements']} statements)"
            )
            u = d["under_blocking_locks"]
            print(
                f"  statements overlapping the {u['operations']} app-blocking lock "
                f"operations: {u['statements']}, worst {u.get('max_ms', 0)} ms"
            )
            if blocker:
                print(
                    f"  blocker ended {result['blocker_ended_after_start_seconds']} s after "
                    f"apply started; apply finished after it: "
                    f"{result['apply_finished_after_blocker']}"
                )
        plain, blocked = results["plain"], results["with blocker"]
        met_plain = (
            plain["during_apply"]["max_ms"] <= plain["baseline"]["max_ms"] + 20
            and plain["failures"] == 0
        )
        met_blocked = (
            blocked["during_apply"]["max_ms"] < 150
            and blocked["failures"] == 0
            and bool(blocked["apply_finished_after_blocker"])
        )
        print(f"target plain (worst within 20 ms of baseline, no failures): "
              f"{'met' if met_plain else 'MISSED'}")  # fmt: skip
        print(f"target with blocker (worst < 150 ms, no failures, apply after blocker): "
              f"{'met' if met_blocked else 'MISSED'}")  # fmt: skip

    document = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": harness.machine(),
        "scale": args.scale,
        "clients": args.clients,
        "pace_seconds": PACE_SECONDS,
        "results": results,
    }
    out = harness.write_results("apply_online.json", document)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
