"""Table and btree index bloat (placeholder: not written yet)."""

from __future__ import annotations

from dataclasses import dataclass

from pgrunbook.discover.check import Check, CheckResult
from pgrunbook.discover.context import Context


@dataclass(frozen=True)
class Thresholds:
    pass


def run(ctx: Context, limits: Thresholds) -> CheckResult:
    return CheckResult()


CHECK = Check(id="bloat", title="Table and btree index bloat", run=run, thresholds=Thresholds())
