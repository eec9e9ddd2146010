"""``pgrunbook monitor``: the runbook's script 09, a live snapshot of the database.

One module per section (connections, long-running queries, sessions idle in a transaction,
lock waits, cache hit ratios, dead tuples, index usage, replication, pg_stat_statements),
each with its SQL and typed rows; ``snapshot()`` reads them all through one read-only
session and ``Snapshot.to_json()`` is the documented JSON document (docs/monitor.md).
"""

from pgrunbook.monitor.locks import LockNode, LockSession, LockTree, build_tree
from pgrunbook.monitor.snapshot import (
    Monitor,
    MonitorError,
    Snapshot,
    Thresholds,
    open_monitor,
    snapshot,
)

__all__ = [
    "LockNode",
    "LockSession",
    "LockTree",
    "Monitor",
    "MonitorError",
    "Snapshot",
    "Thresholds",
    "build_tree",
    "open_monitor",
    "snapshot",
]
