"""Connections in use against what the server allows.

Ordinary roles may use ``max_connections`` minus the slots kept for superusers
(``superuser_reserved_connections``) and, on PostgreSQL 16+, for roles with
``pg_use_reserved_connections`` (``reserved_connections``). When they are gone, new
connections fail with "too many clients already". The count is every client backend of the
whole server (all databases), this session included.

On Neon the limit follows the compute size, and the plans differ (runbook section 4:
Free 100, Pro 500 connections): the app should connect through the ``-pooler`` endpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from pgrunbook.discover.check import Check, CheckResult
from pgrunbook.discover.context import Context
from pgrunbook.findings import Finding, Severity

# reserved_connections exists from PostgreSQL 16: missing_ok makes it NULL before that.
LIMITS_SQL: Final = """
SELECT current_setting('max_connections')::int AS max_connections,
       current_setting('superuser_reserved_connections')::int AS superuser_reserved,
       coalesce(current_setting('reserved_connections', true), '0')::int AS reserved
"""

# state is NULL for other roles' sessions without pg_read_all_stats: counted as "unknown".
BY_STATE_SQL: Final = """
SELECT coalesce(a.state, 'unknown') AS state, count(*)::int AS connections
  FROM pg_stat_activity a
 WHERE a.backend_type = 'client backend'
 GROUP BY 1
 ORDER BY 1
"""

# Lists the sessions idle for 10 minutes (the runbook's section 7); ends them only with --yes.
FIX: Final = "pgrunbook doctor connections --terminate-idle 10"
# Runbook section 4, "Limits to monitor".
NEON_PLAN_CONNECTIONS: Final[dict[str, int]] = {"free": 100, "pro": 500}


@dataclass(frozen=True)
class Thresholds:
    warning_ratio: float = 0.80
    critical_ratio: float = 0.95


@dataclass(frozen=True)
class LimitsRow:
    max_connections: int
    superuser_reserved: int
    reserved: int

    @property
    def available(self) -> int:
        return max(self.max_connections - self.superuser_reserved - self.reserved, 1)


@dataclass(frozen=True)
class StateRow:
    state: str
    connections: int


def run(ctx: Context, limits: Thresholds) -> CheckResult:
    (server,) = ctx.rows(LimitsRow, LIMITS_SQL)
    by_state = {row.state: row.connections for row in ctx.rows(StateRow, BY_STATE_SQL)}
    used = sum(by_state.values())
    ratio = used / server.available
    details: dict[str, Any] = {
        "connections": used,
        "available": server.available,
        "max_connections": server.max_connections,
        "superuser_reserved_connections": server.superuser_reserved,
        "reserved_connections": server.reserved,
        "ratio": ratio,
        "by_state": by_state,
    }
    if ctx.server.neon:
        details["neon_plan_connections"] = NEON_PLAN_CONNECTIONS
    if ratio < limits.warning_ratio:
        return CheckResult([], details)
    neon = ""
    if ctx.server.neon:
        neon = (
            " (Neon: the limit follows the compute size; the runbook lists Free 100, Pro 500 "
            "connections; point the app at the -pooler endpoint)"
        )
    states = ", ".join(f"{n} {s}" for s, n in sorted(by_state.items(), key=lambda i: -i[1]))
    finding = Finding(
        check=CHECK.id,
        severity=Severity.CRITICAL if ratio >= limits.critical_ratio else Severity.WARNING,
        object=f"database {ctx.server.database.name}",
        message=f"{used:,} of {server.available:,} connections in use on the server "
        f"({ratio:.0%}; {states}): new connections fail when none are left; pool "
        f"connections and end idle sessions{neon}",
        details=details,
        fix=FIX,
    )
    return CheckResult([finding], details)


CHECK = Check(
    id="connections",
    title="Connections in use vs max_connections",
    run=run,
    thresholds=Thresholds(),
)
