"""The pre-flight checklist: each item ``ok``, ``warn`` or ``fail`` with what was measured and
what to do. ``apply`` (and the other changing commands) refuse on a failed item unless
``--force``; ``pgrunbook preflight`` prints it on its own."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Final, Literal

from pgrunbook.backup.record import Backup, latest_backup
from pgrunbook.connect import connect
from pgrunbook.errors import PgRunbookError
from pgrunbook.preflight.load import Load, measure_load
from pgrunbook.target import Target

Status = Literal["ok", "warn", "fail"]


@dataclass(frozen=True)
class Thresholds:
    connections_warn: float = 0.80  # share of max_connections in use
    connections_fail: float = 0.95
    long_xact_warn_seconds: float = 60.0  # a CREATE INDEX CONCURRENTLY waits for it
    long_xact_fail_seconds: float = 600.0
    lag_warn_seconds: float = 10.0
    lag_fail_seconds: float = 60.0
    backup_max_age: timedelta = timedelta(hours=24)


DEFAULT: Final = Thresholds()


@dataclass(frozen=True)
class Item:
    name: str
    status: Status
    detail: str
    fix: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "detail": self.detail, "fix": self.fix}


@dataclass
class Preflight:
    items: list[Item] = field(default_factory=list)
    load: Load | None = None

    @property
    def failed(self) -> list[Item]:
        return [i for i in self.items if i.status == "fail"]

    @property
    def passed(self) -> bool:
        return not self.failed

    def to_json(self) -> dict[str, Any]:
        return {
            "items": [i.to_json() for i in self.items],
            "passed": self.passed,
            "transactions_per_second": (
                round(self.load.transactions_per_second, 1) if self.load else None
            ),
        }


def _grade(value: float, warn: float, fail: float) -> Status:
    return "fail" if value >= fail else "warn" if value >= warn else "ok"


def endpoint_item(target: Target) -> Item:
    """Changes go through a direct session, never a transaction-mode pooler."""
    try:
        info = target.session("applying changes")
    except PgRunbookError as exc:
        return Item("endpoint", "fail", exc.message, exc.hint)
    pooled = " (the app's URL is pooled; changes go to the direct one)" if target.app.pooled else ""
    return Item("endpoint", "ok", f"direct session to {info.display()}{pooled}")


def load_items(load: Load, limits: Thresholds) -> list[Item]:
    s, r = load.sessions, load.replication
    used = s.connections / s.max_connections if s.max_connections else 0.0
    items = [
        Item(
            "connections",
            _grade(used, limits.connections_warn, limits.connections_fail),
            f"{s.connections} of {s.max_connections} connections in use ({used:.0%}), "
            f"{s.active} other sessions running a statement",
            "close idle sessions first: pgrunbook doctor connections" if used >= 0.8 else None,
        ),
        Item(
            "traffic",
            "ok",
            f"{load.transactions_per_second:,.1f} transactions/s over {load.sample_seconds:.1f} s",
        ),
    ]
    oldest = s.oldest_xact_seconds
    status = _grade(oldest, limits.long_xact_warn_seconds, limits.long_xact_fail_seconds)
    items.append(
        Item(
            "long transactions",
            status,
            f"the oldest open transaction of another session is {oldest:,.0f} s old"
            + (f" (pid {s.oldest_pid})" if s.oldest_pid and status != "ok" else ""),
            "index builds and validations wait for it: let it finish, or find it with "
            "'pgrunbook monitor'"
            if status != "ok"
            else None,
        )
    )
    if r.replicas == 0:
        items.append(Item("replication lag", "ok", "no replicas connected"))
    else:
        items.append(
            Item(
                "replication lag",
                _grade(r.max_lag_seconds, limits.lag_warn_seconds, limits.lag_fail_seconds),
                f"{r.replicas} replica(s), worst replay lag {r.max_lag_seconds:,.1f} s",
                "wait for the replicas to catch up" if r.max_lag_seconds >= 10 else None,
            )
        )
    return items


def backup_item(backup: Backup | None, limits: Thresholds) -> Item:
    hours = limits.backup_max_age.total_seconds() / 3600
    fix = "take one: pgrunbook backup (or pgrunbook branch create on Neon)"
    if backup is None:
        return Item("backup", "fail", "no verified full backup recorded in this database", fix)
    age_hours = backup.age.total_seconds() / 3600
    detail = f"last backup {age_hours:,.1f} h ago: {backup.file} ({backup.size_bytes:,} bytes)"
    if backup.age > limits.backup_max_age:
        return Item("backup", "fail", f"{detail}, older than {hours:g} h", fix)
    return Item("backup", "ok", detail)


def preflight(
    target: Target,
    *,
    sample_seconds: float = 2.0,
    limits: Thresholds = DEFAULT,
    backup: bool = True,
) -> Preflight:
    """Measure the checklist for ``target`` (read-only). ``backup=False`` leaves the backup
    item out, for the commands whose safety gate takes one when it is missing."""
    result = Preflight(items=[endpoint_item(target)])
    with connect(target.reader(), autocommit=True) as conn:
        result.load = measure_load(conn, sample_seconds)
        result.items += load_items(result.load, limits)
        if backup:
            result.items.append(backup_item(latest_backup(conn), limits))
    return result
