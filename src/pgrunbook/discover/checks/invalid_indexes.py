"""Invalid indexes (``indisvalid = false``): leftovers of a failed concurrent build.

``CREATE INDEX CONCURRENTLY`` creates the index first (invalid), then builds it. When the
build fails (a duplicate value for a UNIQUE index, a lock or statement timeout, a
cancelled session) the invalid index stays: no query can use it, yet every INSERT and
UPDATE keeps maintaining it. A build still running looks the same in ``pg_index``; it is
told apart by ``pg_stat_progress_create_index`` and the locks its session holds.
"""

from __future__ import annotations

from typing import Any

from pgrunbook.catalog import Index, Table
from pgrunbook.discover.check import Check, CheckResult, NoThresholds
from pgrunbook.discover.context import Context
from pgrunbook.findings import Finding, Severity
from pgrunbook.indexshape import valid_twin
from pgrunbook.indexsql import Build, current_builds, drop_sql, recreate_sql


def _details(index: Index, state: str) -> dict[str, Any]:
    return {
        "state": state,
        "table": f"{index.schema}.{index.table}",
        "definition": index.definition,
        "drop_sql": drop_sql(index),
        "recreate_sql": recreate_sql(index),
        "bytes": index.bytes,
        "unique": index.is_unique,
    }


def _in_progress(index: Index, build: Build) -> Finding:
    details = _details(index, "build_in_progress")
    details.update(pid=build.pid, command=build.command, phase=build.phase)
    return Finding(
        check=CHECK.id,
        severity=Severity.INFO,
        object=index.qualified,
        message=f"not valid yet: a {build.command or 'CREATE INDEX'} is still building it "
        f"(pid {build.pid}); leave it alone",
        details=details,
        fix=None,
    )


def _partitioned(index: Index) -> Finding:
    return Finding(
        check=CHECK.id,
        severity=Severity.WARNING,
        object=index.qualified,
        message="invalid partitioned index: some partition has no matching index attached; "
        "create it on that partition and ALTER INDEX ... ATTACH PARTITION",
        details={
            **_details(index, "partitions_missing"),
            "drop_sql": None,
            "recreate_sql": None,  # CONCURRENTLY does not apply to a partitioned index
        },
        fix=None,
    )


def _leftover(index: Index, table: Table) -> Finding:
    details = _details(index, "invalid")
    twin = valid_twin(index, table)
    if twin is not None:  # only drop it
        details["valid_twin"] = twin.qualified
        return Finding(
            check=CHECK.id,
            severity=Severity.WARNING,
            object=index.qualified,
            message=f"invalid copy of the valid index {twin.name} (a failed REINDEX "
            "CONCURRENTLY leaves one): every write maintains it, no query can use it; drop it",
            details=details,
            fix=drop_sql(index),
        )
    duplicates = (
        " (a UNIQUE build fails while the column holds duplicate values: remove them first)"
        if index.is_unique
        else ""
    )
    return Finding(
        check=CHECK.id,
        severity=Severity.WARNING,
        object=index.qualified,
        message="invalid index left by a failed CREATE INDEX CONCURRENTLY: every write "
        f"maintains it, no query can use it; drop it and build it again{duplicates}",
        details=details,
        fix=f"{drop_sql(index)}\n{recreate_sql(index)}",
    )


def run(ctx: Context, limits: NoThresholds) -> CheckResult:
    invalid = [(t, i) for t in ctx.catalog for i in t.indexes if not i.valid]
    if not invalid:
        return CheckResult()
    builds = current_builds(ctx.conn)
    findings = []
    for table, index in invalid:
        build = next((b for b in builds if b.builds(index)), None)
        if build is not None:
            findings.append(_in_progress(index, build))
        elif table.kind == "p":
            findings.append(_partitioned(index))
        else:
            findings.append(_leftover(index, table))
    return CheckResult(findings)


CHECK = Check(
    id="invalid_indexes",
    title="Invalid indexes left by a failed concurrent build",
    run=run,
    thresholds=NoThresholds(),
)
