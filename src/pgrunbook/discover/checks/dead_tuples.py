"""Dead tuples over the runbook's threshold (10% of the table).

An UPDATE or DELETE leaves the old row version behind until VACUUM removes it. Autovacuum
starts at 20% (plus 50 rows) by default, so a table can sit between 10% and 20% dead,
slowing scans, for a long time. The fix is ``VACUUM (ANALYZE)`` (``pgrunbook maintain``).
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql

from pgrunbook.discover.check import Check, CheckResult
from pgrunbook.discover.checks.tables import dead_ratio
from pgrunbook.discover.context import Context
from pgrunbook.findings import Finding, Severity


@dataclass(frozen=True)
class Thresholds:
    max_dead_ratio: float = 0.10  # the runbook's "high dead tuple percentage (>10%)"
    critical_dead_ratio: float = 0.50
    min_dead_tuples: int = 50  # autovacuum_vacuum_threshold's default: below it, noise


def run(ctx: Context, limits: Thresholds) -> CheckResult:
    findings = []
    for table in ctx.catalog:
        ratio = dead_ratio(table)
        dead = table.n_dead_tup or 0
        if ratio is None or ratio <= limits.max_dead_ratio or dead < limits.min_dead_tuples:
            continue
        severity = Severity.CRITICAL if ratio >= limits.critical_dead_ratio else Severity.WARNING
        target = sql.Identifier(table.schema, table.name)
        findings.append(
            Finding(
                check=CHECK.id,
                severity=severity,
                object=table.qualified,
                message=f"{ratio:.1%} dead tuples ({dead:,} dead, {table.n_live_tup or 0:,} "
                f"live), over the {limits.max_dead_ratio:.0%} threshold",
                details={
                    "dead_tuples": dead,
                    "live_tuples": table.n_live_tup,
                    "dead_ratio": ratio,
                    "threshold": limits.max_dead_ratio,
                    "last_autovacuum": table.last_autovacuum,
                    "last_vacuum": table.last_vacuum,
                },
                fix=sql.SQL("VACUUM (ANALYZE) {};").format(target).as_string(),
            )
        )
    return CheckResult(findings)


CHECK = Check(
    id="dead_tuples",
    title="Dead tuples over the runbook's 10% threshold",
    run=run,
    thresholds=Thresholds(),
)
