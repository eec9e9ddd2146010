"""Connection pressure from sessions that hold a slot and do nothing (runbook 7).

Two findings under the id ``idle_sessions`` (thresholds in ``[checks.idle_sessions]``):

- sessions of this database idle in a transaction for longer than
  ``idle_in_transaction_seconds``: they hold their locks and keep VACUUM from removing dead
  rows; warning, critical past ``idle_in_transaction_critical_seconds``;
- sessions of this database idle for longer than ``idle_seconds`` (the runbook's ten
  minutes): each holds one of ``max_connections``' slots; info, a warning when they hold
  ``idle_share_warning`` of them or more.

How many slots are in use overall is the ``connections`` discovery check's job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import psycopg
from psycopg import sql
from psycopg.rows import class_row

from pgrunbook.discover import Check, CheckResult, Context
from pgrunbook.findings import Finding, Severity
from pgrunbook.report import units

CHECK_ID: Final = "idle_sessions"

IDLE_SQL: Final = """
SELECT a.pid, a.usename::text AS user, a.application_name, a.state,
       extract(epoch FROM now() - a.state_change)::float8 AS state_seconds,
       extract(epoch FROM now() - a.xact_start)::float8 AS transaction_seconds
  FROM pg_stat_activity a
 WHERE a.backend_type = 'client backend'
   AND a.datname = current_database()
   AND a.pid <> pg_backend_pid()
   AND a.state IN ('idle', 'idle in transaction', 'idle in transaction (aborted)')
 ORDER BY a.state_change, a.pid
"""

SERVER_SQL: Final = """
SELECT current_database()::text AS database,
       current_setting('max_connections')::int AS max_connections
"""


@dataclass(frozen=True)
class Thresholds:
    idle_in_transaction_seconds: float = 60.0
    idle_in_transaction_critical_seconds: float = 600.0
    idle_seconds: float = 600.0  # the runbook's "idle for 10 minutes"
    idle_share_warning: float = 0.25  # of max_connections


@dataclass(frozen=True)
class IdleRow:
    pid: int
    user: str | None
    application_name: str | None
    state: str
    state_seconds: float
    transaction_seconds: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "user": self.user,
            "application_name": self.application_name,
            "state": self.state,
            "state_seconds": round(self.state_seconds, 3),
            "transaction_seconds": (
                None if self.transaction_seconds is None else round(self.transaction_seconds, 3)
            ),
        }


@dataclass(frozen=True)
class _Server:
    database: str
    max_connections: int


def _who(row: IdleRow) -> str:
    app = f", application {row.application_name}" if row.application_name else ""
    return f"pid {row.pid}, role {row.user}{app}"


def idle_findings(conn: psycopg.Connection[Any], limits: Thresholds) -> list[Finding]:
    """The ``idle_sessions`` findings for the current database."""
    server = conn.cursor(row_factory=class_row(_Server)).execute(SERVER_SQL).fetchone()
    assert server is not None
    rows = conn.cursor(row_factory=class_row(IdleRow)).execute(IDLE_SQL).fetchall()
    database = f"database {server.database}"
    findings = []

    in_transaction = [
        r
        for r in rows
        if r.state != "idle" and r.state_seconds > limits.idle_in_transaction_seconds
    ]
    if in_transaction:
        longest = max(in_transaction, key=lambda r: r.state_seconds)
        critical = longest.state_seconds > limits.idle_in_transaction_critical_seconds
        timeout = f"{limits.idle_in_transaction_critical_seconds:g}s"
        findings.append(
            Finding(
                check=CHECK_ID,
                severity=Severity.CRITICAL if critical else Severity.WARNING,
                object=database,
                message=f"{len(in_transaction)} session(s) idle in a transaction for over "
                f"{units.duration(limits.idle_in_transaction_seconds)} (longest "
                f"{units.duration(longest.state_seconds)}: {_who(longest)}); they hold "
                "their locks and keep VACUUM from removing dead rows",
                details={
                    "state": "idle in transaction",
                    "count": len(in_transaction),
                    "longest_seconds": longest.state_seconds,
                    "threshold_seconds": limits.idle_in_transaction_seconds,
                    "sessions": [r.to_json() for r in in_transaction],
                },
                fix=sql.SQL("ALTER DATABASE {} SET idle_in_transaction_session_timeout = {};")
                .format(sql.Identifier(server.database), sql.Literal(timeout))
                .as_string(),
            )
        )

    idle = [r for r in rows if r.state == "idle" and r.state_seconds > limits.idle_seconds]
    if idle:
        share = len(idle) / server.max_connections
        findings.append(
            Finding(
                check=CHECK_ID,
                severity=Severity.WARNING if share >= limits.idle_share_warning else Severity.INFO,
                object=database,
                message=f"{len(idle)} session(s) idle for over "
                f"{units.duration(limits.idle_seconds)}, holding {units.percent(share)} of "
                f"max_connections ({server.max_connections})",
                details={
                    "state": "idle",
                    "count": len(idle),
                    "max_connections": server.max_connections,
                    "share": share,
                    "threshold_seconds": limits.idle_seconds,
                    "sessions": [r.to_json() for r in idle],
                },
                fix=f"pgrunbook doctor connections --terminate-idle {limits.idle_seconds / 60:g}",
            )
        )
    return findings


def run(ctx: Context, limits: Thresholds) -> CheckResult:
    return CheckResult(idle_findings(ctx.conn, limits))


# Not in discovery's registry: doctor runs it alongside the discovery checks it uses.
CHECK = Check(
    id=CHECK_ID,
    title="Sessions idle (in a transaction) for too long",
    run=run,
    thresholds=Thresholds(),
)
