"""Connections in use against max_connections (placeholder: not written yet)."""

from __future__ import annotations

from dataclasses import dataclass

from pgrunbook.discover.check import Check, CheckResult
from pgrunbook.discover.context import Context


@dataclass(frozen=True)
class Thresholds:
    pass


def run(ctx: Context, limits: Thresholds) -> CheckResult:
    return CheckResult()


CHECK = Check(
    id="connections",
    title="Connections in use against max_connections",
    run=run,
    thresholds=Thresholds(),
)
