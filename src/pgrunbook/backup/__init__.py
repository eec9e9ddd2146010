"""Backups with the real pg_dump, verification, the ``pgrunbook.backups`` record, restore."""

from __future__ import annotations

from pgrunbook.backup.dump import (
    BackupFailedError,
    BackupOptions,
    BackupPlan,
    BackupResult,
    plan_backup,
    take_backup,
)
from pgrunbook.backup.record import Backup, BackupRecord, latest_backup, record_backup
from pgrunbook.backup.restore import (
    RestoreFailedError,
    RestoreOptions,
    RestorePlan,
    RestoreResult,
    existing_tables,
    plan_restore,
    refuse_non_empty,
    run_restore,
)
from pgrunbook.backup.tools import ClientTool, ToolVersionError, find_tool

__all__ = [
    "Backup",
    "BackupFailedError",
    "BackupOptions",
    "BackupPlan",
    "BackupRecord",
    "BackupResult",
    "ClientTool",
    "RestoreFailedError",
    "RestoreOptions",
    "RestorePlan",
    "RestoreResult",
    "ToolVersionError",
    "existing_tables",
    "find_tool",
    "latest_backup",
    "plan_backup",
    "plan_restore",
    "record_backup",
    "refuse_non_empty",
    "run_restore",
    "take_backup",
]
