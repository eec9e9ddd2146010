"""``pgrunbook discover``: the runbook's script 01, as checks that return findings."""

from pgrunbook.discover.check import Check, CheckResult
from pgrunbook.discover.context import Context, StatsWindow
from pgrunbook.discover.registry import BY_ID, CHECKS
from pgrunbook.discover.run import CheckStatus, DiscoveryReport, discover

__all__ = [
    "BY_ID",
    "CHECKS",
    "Check",
    "CheckResult",
    "CheckStatus",
    "Context",
    "DiscoveryReport",
    "StatsWindow",
    "discover",
]
