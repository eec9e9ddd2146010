"""What a discovery check is: an id, metadata, thresholds, and a function to findings.

Each check lives in its own module under ``pgrunbook.discover.checks`` and exports
``CHECK``. Its thresholds are a frozen dataclass (defaults in code, overridable in the
config file under ``[checks.<id>]``); its SQL returns raw numbers and its ``run`` turns
rows and thresholds into findings.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pgrunbook.findings import Finding

if TYPE_CHECKING:
    from pgrunbook.discover.context import Context

T = TypeVar("T")


@dataclass(frozen=True)
class NoThresholds:
    """For checks with nothing to tune."""


@dataclass
class CheckResult:
    """What a check found, plus facts worth showing even when nothing is wrong."""

    findings: list[Finding] = field(default_factory=list)
    facts: Mapping[str, Any] | list[Any] | None = None


@dataclass(frozen=True)
class Check(Generic[T]):
    id: str
    title: str
    run: Callable[[Context, T], CheckResult]
    thresholds: T
    min_server_version: int = 140000
    extension: str | None = None  # required extension: skipped (with the reason) without it

    @property
    def docs(self) -> str:
        return f"docs/checks/{self.id}.md"
