"""Running the critical queries: each with ``EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)``,
several times (the median run counts), once per parameter variant.

A query with a sampled parameter runs twice: with the hot values (the busiest room, the
power user) and with the typical ones (the median). A query whose parameters are all fixed,
or all given with ``--param``, runs once (variant ``fixed``). Values from a baseline file
(``pinned``) are used again, so a comparison is of the same query with the same values.
Every run is inside a transaction that is rolled back (``explainplan.explain_analyze``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import psycopg
from psycopg import errors

from pgrunbook.catalog import load_catalog
from pgrunbook.change.step import Skip
from pgrunbook.errors import ConfigError
from pgrunbook.explain.catalog import CatalogQuery, render_catalog
from pgrunbook.explain.params import Sampler
from pgrunbook.explainplan import PlanSummary, explain_analyze
from pgrunbook.profile.model import QuerySpec

DATABASE_SQL: Final = "SELECT current_database()"
DEFAULT_RUNS: Final = 5
VARIANTS: Final = ("hot", "typical")
FIXED: Final = "fixed"
PRESENT, INVALID, MISSING = "present", "invalid", "missing"
# A table this small is read whole faster than through any index: the planner is right
# not to use one, and the index pays off as the table grows (not a failure).
SMALL_TABLE_PAGES: Final = 10
SMALL_TABLE: Final = "small table"


@dataclass(frozen=True)
class Binding:
    """One variant's parameter values and where each came from."""

    variant: str
    values: dict[str, Any]
    notes: dict[str, str]


def bindings(
    query: CatalogQuery,
    sampler: Sampler,
    overrides: Mapping[str, str],
    pinned: Mapping[str, Mapping[str, Any]],
) -> list[Binding] | str:
    """The variants ``query`` runs in, or why it cannot run (nothing to sample from).

    ``overrides`` are ``--param`` values (they win); ``pinned`` the values of a baseline,
    per variant.
    """
    params = query.spec.params
    sampled = [n for n, p in params.items() if p.sampled and n not in overrides]
    out = []
    for variant in VARIANTS if sampled else (FIXED,):
        values: dict[str, Any] = {}
        notes: dict[str, str] = {}
        base = pinned.get(variant, {})
        for name, param in params.items():
            if name in overrides:
                values[name], notes[name] = overrides[name], "--param"
            elif name in base:
                values[name], notes[name] = base[name], "the baseline's value"
            elif not param.sampled:
                values[name], notes[name] = param.value, "fixed in the profile"
            else:
                sample = sampler.sample(param)
                if isinstance(sample, str):
                    return sample
                values[name], notes[name] = sample.value(variant), sample.note(variant)
        out.append(Binding(variant, values, notes))
    return out


@dataclass(frozen=True)
class QueryResult:
    """One critical query in one variant: its plan against the index it should use."""

    name: str
    description: str
    table: str  # schema.name
    expected_index: str
    index_state: str  # present, invalid (a failed concurrent build) or missing
    binding: Binding
    summary: PlanSummary
    accepted: tuple[str, ...] = ()  # other indexes that serve it as well
    table_pages: int = 0  # the table's size in pages (pg_class.relpages)

    @property
    def variant(self) -> str:
        return self.binding.variant

    @property
    def passed(self) -> bool:
        """The plan uses the expected index (or one the profile accepts instead)."""
        return any(self.summary.uses(i) for i in (self.expected_index, *self.accepted))

    @property
    def verdict(self) -> str:
        """``uses it``, ``uses <accepted index>``, ``index missing``, ``index invalid``,
        ``small table`` (not used, rightly: the table is read whole faster) or ``not used``."""
        if self.summary.uses(self.expected_index):
            return "uses it"
        for other in self.accepted:
            if self.summary.uses(other):
                return f"uses {other}"
        if self.index_state != PRESENT:
            return f"index {self.index_state}"
        return SMALL_TABLE if self.table_pages <= SMALL_TABLE_PAGES else "not used"

    @property
    def failed(self) -> bool:
        """Not used although it exists (or is invalid); a small table is no failure."""
        return not self.passed and self.verdict not in (SMALL_TABLE, f"index {MISSING}")

    def to_json(self) -> dict[str, Any]:
        s = self.summary
        return {
            "name": self.name,
            "variant": self.variant,
            "description": self.description,
            "table": self.table,
            "expected_index": self.expected_index,
            "index_state": self.index_state,
            "used_indexes": list(s.indexes),
            "passed": self.passed,
            "verdict": self.verdict,
            "accepted_indexes": list(self.accepted),
            "table_pages": self.table_pages,
            "median_ms": round(s.execution_ms, 3),
            "planning_ms": round(s.planning_ms, 3),
            "shared_hit": s.shared_hit,
            "shared_read": s.shared_read,
            "rows": s.rows,
            "node_type": s.node_type,
            "path": list(s.path),
            "scans": list(s.scans),
            "sorts": list(s.sorts),
            "params": dict(self.binding.values),
            "param_notes": dict(self.binding.notes),
            "sql": s.query,
            "plan": s.plan,
        }


@dataclass
class ExplainReport:
    database: str
    schema: str
    runs: int
    results: list[QueryResult] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)

    def failures(self, *, missing: bool) -> list[QueryResult]:
        """The results that do not use their index although it exists (or is invalid), and
        with ``missing`` also those whose index is not built yet."""
        return [
            r
            for r in self.results
            if r.failed or (missing and not r.passed and r.index_state == MISSING)
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "schema": self.schema,
            "runs": self.runs,
            "queries": [r.to_json() for r in self.results],
            "skipped": [s.to_json() for s in self.skipped],
        }


def select_queries(specs: Sequence[QuerySpec], names: Sequence[str]) -> list[QuerySpec]:
    """The queries called ``names`` (all without names); ConfigError for an unknown one."""
    if not names:
        return list(specs)
    known = {s.name: s for s in specs}
    for name in names:
        if name not in known:
            raise ConfigError(
                f"unknown query {name!r}",
                f"the profile's queries are {', '.join(known) or '(none)'}",
            )
    return [known[n] for n in dict.fromkeys(names)]


def check_overrides(specs: Sequence[QuerySpec], overrides: Mapping[str, str]) -> None:
    """ConfigError for a ``--param`` that no selected query has."""
    known = sorted({name for spec in specs for name in spec.params})
    for name in overrides:
        if name not in known:
            raise ConfigError(
                f"no selected query has the parameter {name!r}",
                f"the parameters are {', '.join(known) or '(none)'}",
            )


def explain_queries(
    conn: psycopg.Connection[Any],
    schema: str,
    specs: Sequence[QuerySpec],
    *,
    runs: int = DEFAULT_RUNS,
    overrides: Mapping[str, str] | None = None,
    pinned: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None,
    on_query: Callable[[str, str], None] = lambda name, variant: None,
) -> ExplainReport:
    """Explain ``specs`` on ``conn``'s database (``schema``), each variant ``runs`` times.

    ``pinned`` maps a query name to its variants' values (from a baseline). A query whose
    table or columns are missing, or that has nothing to sample from, is skipped with the
    reason. A query that fails (a ``--param`` value of the wrong type, a typo in a profile's
    sql) is a ConfigError.
    """
    catalog = load_catalog(conn, schema)
    row = conn.execute(DATABASE_SQL).fetchone()
    report = ExplainReport(str(row[0]) if row else "?", schema, runs)
    queries, report.skipped = render_catalog(catalog, specs)
    sampler = Sampler(conn, catalog)
    states = {i.name: PRESENT if i.valid else INVALID for i in catalog.indexes()}
    for query in queries:
        bound = bindings(query, sampler, overrides or {}, (pinned or {}).get(query.name, {}))
        if isinstance(bound, str):
            report.skipped.append(Skip(query.name, bound))
            continue
        for binding in bound:
            on_query(query.name, binding.variant)
            statement = query.bind(binding.values)
            try:
                summary = explain_analyze(conn, statement, runs=runs)
            except (errors.DataError, psycopg.ProgrammingError) as exc:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise ConfigError(
                    f"query {query.name} ({binding.variant}) failed: {first}",
                    "check the --param values and the query's sql in the profile",
                ) from None
            report.results.append(
                QueryResult(
                    name=query.name,
                    description=query.spec.description,
                    table=query.table.qualified,
                    expected_index=query.index,
                    index_state=states.get(query.index, MISSING),
                    binding=binding,
                    summary=summary,
                    accepted=query.spec.accept,
                    table_pages=max(query.table.pages or 0, 0),
                )
            )
    return report
