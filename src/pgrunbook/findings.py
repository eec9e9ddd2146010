"""The report model every read-only command shares: findings with a severity.

A finding is ``{check, severity, object, message, details, fix}`` (the JSON contract in
PRODUCT.md). ``details`` holds raw numbers (bytes, seconds, counts); formatting them is the
renderer's job. ``fix`` is the SQL or the pgrunbook command that addresses it, if any.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def at_least(self, other: Severity) -> bool:
        return self.rank >= other.rank


_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


@dataclass(frozen=True)
class Finding:
    check: str
    severity: Severity
    object: str
    message: str
    details: Mapping[str, Any] = field(default_factory=dict)
    fix: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "severity": self.severity.value,
            "object": self.object,
            "message": self.message,
            "details": dict(self.details),
            "fix": self.fix,
        }


def worst(findings: Iterable[Finding]) -> Severity | None:
    """The highest severity among ``findings`` (None when there are none)."""
    return max((f.severity for f in findings), key=lambda s: s.rank, default=None)


def exit_code(findings: Iterable[Finding], fail_on: Severity | None) -> int:
    """0, or 1 when a finding is at or above ``fail_on`` (the CI contract)."""
    if fail_on is None:
        return 0
    top = worst(findings)
    return 1 if top is not None and top.at_least(fail_on) else 0
