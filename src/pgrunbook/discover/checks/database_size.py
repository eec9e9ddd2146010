"""The database's size against the plan's storage limit.

Managed plans cap storage: Neon's Free plan at 512 MB (runbook section 4), after which
writes fail. The limit comes from ``pgrunbook discover --plan-limit MB``; on a Neon host
without it, Neon Free's 512 MB is assumed. Without a limit the size is only reported as a
fact. The largest tables of the schema are listed, since they are what retention policies
(``pgrunbook cleanup``) can shrink.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from pgrunbook.discover.check import Check, CheckResult
from pgrunbook.discover.context import Context
from pgrunbook.findings import Finding, Severity

SIZE_SQL: Final = """
SELECT current_database() AS database, pg_database_size(current_database()) AS bytes
"""

# Neon's Free plan storage: the default limit on a Neon host (runbook section 4).
NEON_FREE_BYTES: Final = 512 * 1024 * 1024
# Deletes what the retention policies allow (a dry run unless --execute).
FIX: Final = "pgrunbook cleanup"


@dataclass(frozen=True)
class Thresholds:
    warning_ratio: float = 0.80
    critical_ratio: float = 1.00
    top_tables: int = 5


@dataclass(frozen=True)
class SizeRow:
    database: str
    bytes: int


def _mb(size: int) -> str:
    return f"{size / 2**20:,.1f} MB"


def run(ctx: Context, limits: Thresholds) -> CheckResult:
    (size,) = ctx.rows(SizeRow, SIZE_SQL)
    largest = sorted(ctx.catalog, key=lambda t: (-t.total_bytes, t.name))[: limits.top_tables]
    limit = ctx.plan_limit_bytes
    ratio = size.bytes / limit if limit else None
    details: dict[str, Any] = {
        "bytes": size.bytes,
        "limit_bytes": limit,
        "ratio": ratio,
        "largest_tables": [{"table": t.qualified, "total_bytes": t.total_bytes} for t in largest],
    }
    if ratio is None or ratio < limits.warning_ratio:
        return CheckResult([], details)
    assert limit is not None
    full = ratio >= limits.critical_ratio
    message = (
        f"{_mb(size.bytes)} used of the plan's {_mb(limit)} ({ratio:.0%}): "
        + ("writes fail once the plan's storage is full" if full else "close to the limit")
        + "; delete old rows (retention), drop unused indexes, or move to a larger plan"
    )
    if ctx.server.neon and limit == NEON_FREE_BYTES:
        message += " (the default on a Neon host is the Free plan's limit: set --plan-limit MB)"
    finding = Finding(
        check=CHECK.id,
        severity=Severity.CRITICAL if full else Severity.WARNING,
        object=f"database {size.database}",
        message=message,
        details=details,
        fix=FIX,
    )
    return CheckResult([finding], details)


CHECK = Check(
    id="database_size",
    title="Database size vs the plan's storage limit",
    run=run,
    thresholds=Thresholds(),
)
