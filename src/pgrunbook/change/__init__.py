"""The change engine: operations that know their inverse, run online, journaled.

Steps (issue 4: indexes, triggers, audit, roles, constraints) plan ``Operation`` values for
this database; ``runner.apply_operations`` runs them under short lock timeouts, waiting
for conflicting sessions instead of queueing behind them, and writes each one to the
journal (``pgrunbook.journal``) as it completes.
"""

from pgrunbook.change.journal import Journal, JournalEntry, RunLock
from pgrunbook.change.operation import Operation
from pgrunbook.change.runner import ApplyPolicy, OperationResult, apply_operations

__all__ = [
    "ApplyPolicy",
    "Journal",
    "JournalEntry",
    "Operation",
    "OperationResult",
    "RunLock",
    "apply_operations",
]
