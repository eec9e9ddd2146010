"""Baseline files (``--baseline FILE``) and before/after comparisons (``--compare FILE``).

A baseline is the ``--json`` document of a run plus when and where it was taken. Comparing
matches each query and variant of a new run with the baseline's, which also hands the
baseline's parameter values to the new run (``pinned``): before and after explain the same
query with the same values.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from pgrunbook import __version__
from pgrunbook.errors import ConfigError
from pgrunbook.explain.run import ExplainReport, QueryResult
from pgrunbook.explainplan import Comparison, PlanSummary

FORMAT: Final = "pgrunbook explain baseline"


def write_baseline(path: Path, report: ExplainReport, now: datetime | None = None) -> None:
    """Save ``report`` to ``path`` (ConfigError when it cannot be written)."""
    document = {
        "format": FORMAT,
        "pgrunbook": __version__,
        "taken_at": (now or datetime.now(UTC)).isoformat(timespec="seconds"),
        **report.to_json(),
    }
    try:
        path.write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot write the baseline {path}: {exc.strerror}", "choose another path"
        ) from None


@dataclass(frozen=True)
class BaselineEntry:
    name: str
    variant: str
    expected_index: str
    params: dict[str, Any]
    summary: PlanSummary


@dataclass(frozen=True)
class Baseline:
    path: Path
    database: str
    taken_at: str
    entries: dict[tuple[str, str], BaselineEntry]

    def pinned(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Per query, per variant: the parameter values the baseline ran with."""
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for (name, variant), entry in self.entries.items():
            out.setdefault(name, {})[variant] = entry.params
        return out


def _entry(item: Any) -> BaselineEntry:
    if not isinstance(item, dict) or not isinstance(item.get("params"), dict):
        raise ValueError("not a query result")
    summary = PlanSummary.from_json(
        {
            **item,
            "query": item["sql"],
            "indexes": item["used_indexes"],
            "execution_ms": item["median_ms"],
        }
    )
    return BaselineEntry(
        str(item["name"]), str(item["variant"]), str(item["expected_index"]),
        dict(item["params"]), summary,
    )  # fmt: skip


def read_baseline(path: Path) -> Baseline:
    """The baseline in ``path``; one-line ConfigError when it is missing or not one."""
    hint = "pass a file written by pgrunbook explain --baseline FILE"
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"baseline {path} does not exist", hint) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the baseline {path}: {exc}", hint) from None
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"baseline {path} is not JSON ({exc.msg}, line {exc.lineno})", hint
        ) from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ConfigError(f"{path} is not a pgrunbook explain baseline", hint)
    try:
        entries = [_entry(item) for item in document["queries"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"baseline {path} is damaged ({type(exc).__name__}: {exc})", hint
        ) from None
    return Baseline(
        path,
        str(document.get("database", "?")),
        str(document.get("taken_at", "?")),
        {(e.name, e.variant): e for e in entries},
    )


@dataclass(frozen=True)
class QueryComparison:
    """One query and variant, before (the baseline) and after (this run)."""

    before: BaselineEntry
    after: QueryResult

    @property
    def comparison(self) -> Comparison:
        return Comparison(self.before.summary, self.after.summary)

    @property
    def plan_changed(self) -> bool:
        return self.before.summary.path != self.after.summary.path

    def to_json(self) -> dict[str, Any]:
        b, a = self.before.summary, self.after.summary
        return {
            "name": self.after.name,
            "variant": self.after.variant,
            "expected_index": self.after.expected_index,
            "before_ms": round(b.execution_ms, 3),
            "after_ms": round(a.execution_ms, 3),
            "speedup": round(self.comparison.speedup, 1),
            "before_indexes": list(b.indexes),
            "after_indexes": list(a.indexes),
            "passed_before": self.after.expected_index in b.indexes,
            "passed_after": self.after.passed,
            "plan_changed": self.plan_changed,
            "before_path": list(b.path),
            "after_path": list(a.path),
            "before_buffers": b.buffers,
            "after_buffers": a.buffers,
        }


def compare(baseline: Baseline, report: ExplainReport) -> list[QueryComparison]:
    """This run's results that the baseline has too, in this run's order."""
    return [
        QueryComparison(baseline.entries[(r.name, r.variant)], r)
        for r in report.results
        if (r.name, r.variant) in baseline.entries
    ]
