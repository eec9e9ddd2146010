"""``pgrunbook cleanup`` (runbook script 08): retention policies, dry run, batched deletes."""

from pgrunbook.cleanup.batches import BatchProgress, CleanupResult, delete_statement, run_cleanup
from pgrunbook.cleanup.dryrun import DryRun, dry_run
from pgrunbook.cleanup.policies import PolicySkip, ResolvedPolicy, resolve_policies

__all__ = [
    "BatchProgress",
    "CleanupResult",
    "DryRun",
    "PolicySkip",
    "ResolvedPolicy",
    "delete_statement",
    "dry_run",
    "resolve_policies",
    "run_cleanup",
]
