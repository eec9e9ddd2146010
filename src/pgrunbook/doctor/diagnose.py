"""``pgrunbook doctor``: the runbook's troubleshooting cases, diagnosed in one run.

Section 7's four cases, through the discovery checks that find them, narrowed to what
went wrong rather than what could be better:

- invalid indexes (``invalid_indexes``), which ``--fix`` rebuilds (``doctor.indexes``);
- constraints left ``NOT VALID`` and the rows that violate them: existing ``NOT VALID``
  CHECK constraints (``constraint_violations``, state ``not_valid``) and ``NOT VALID``
  foreign keys with orphan rows (``orphans``; inferred relations are discovery's business);
- connection pressure: slots in use (``connections``) plus sessions idle, or idle in a
  transaction, for too long (``doctor.pressure``);
- slow queries (``statements``, from ``pg_stat_statements`` when it is installed).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from pgrunbook.config import Config
from pgrunbook.discover import Check, DiscoveryReport, discover
from pgrunbook.discover.registry import select
from pgrunbook.doctor import pressure
from pgrunbook.doctor.indexes import Repair
from pgrunbook.dsn import ConnInfo
from pgrunbook.findings import Finding, Severity
from pgrunbook.profile import Profile

CHECKS: Final = ("invalid_indexes", "constraint_violations", "orphans", "connections", "statements")


def _relevant(finding: Finding) -> bool:
    """Section 7 is about what failed: NOT VALID constraints, not planned ones."""
    if finding.check == "constraint_violations":
        return finding.details.get("state") == "not_valid"
    if finding.check == "orphans":
        # The orphans check counts NOT VALID foreign keys and inferred relations only.
        relation = finding.details.get("relation")
        return isinstance(relation, dict) and relation.get("source") == "foreign_key"
    return True


@dataclass
class DoctorReport:
    discovery: DiscoveryReport
    findings: list[Finding]
    repairs: list[Repair] = field(default_factory=list)

    @property
    def unresolved(self) -> list[Finding]:
        """Findings at warning or above that no repair took care of."""
        fixed = {r.object for r in self.repairs if r.fixed}
        return [
            f
            for f in self.findings
            if f.severity.at_least(Severity.WARNING)
            and not (f.check == "invalid_indexes" and f.object in fixed)
        ]

    @property
    def exit_code(self) -> int:
        unfixed = any(r.status in ("planned", "failed") for r in self.repairs)
        return 1 if self.unresolved or unfixed else 0

    def to_json(self) -> dict[str, Any]:
        return {
            "findings": [f.to_json() for f in self.findings],
            "fixed": [r.to_json() for r in self.repairs],
            "database": self.discovery.database,
            "schema": self.discovery.schema,
            "checks": [c.to_json() for c in self.discovery.checks],
        }


def diagnose(
    info: ConnInfo,
    *,
    schema: str | None = None,
    config: Config | None = None,
    profile: Profile | None = None,
    on_check: Callable[[Check[Any]], None] = lambda check: None,
) -> DoctorReport:
    """Run section 7's diagnoses read-only; the findings come worst first."""
    report = discover(
        info,
        schema=schema,
        config=config,
        profile=profile,
        checks=[*select(CHECKS), pressure.CHECK],
        on_check=on_check,
    )
    findings = [f for f in report.findings if _relevant(f)]
    return DoctorReport(report, _worst_first(findings))


def _worst_first(findings: Iterable[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: -f.severity.rank)
