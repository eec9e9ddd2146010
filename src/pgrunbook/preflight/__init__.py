"""The runbook's "Before Starting" checklist, measured: load, long transactions, replication
lag, the last backup and the endpoint changes would go through."""

from pgrunbook.preflight.checklist import Item, Preflight, Status, preflight

__all__ = ["Item", "Preflight", "Status", "preflight"]
