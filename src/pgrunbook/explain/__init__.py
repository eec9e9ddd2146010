"""``pgrunbook explain``: the app's critical queries, explained against the indexes they need
(runbook script 10 and section 5's "Performance Verification").

``catalog`` renders the profile's ``[[queries]]`` in this database's names, ``params``
samples their parameters from the data, ``run`` explains them, ``baseline`` saves a run and
compares a later one with it.
"""

from pgrunbook.explain.baseline import (
    Baseline,
    QueryComparison,
    compare,
    read_baseline,
    write_baseline,
)
from pgrunbook.explain.catalog import CatalogQuery, render_catalog, render_query
from pgrunbook.explain.params import Sample, Sampler
from pgrunbook.explain.run import (
    DEFAULT_RUNS,
    Binding,
    ExplainReport,
    QueryResult,
    bindings,
    check_overrides,
    explain_queries,
    select_queries,
)

__all__ = [
    "DEFAULT_RUNS",
    "Baseline",
    "Binding",
    "CatalogQuery",
    "ExplainReport",
    "QueryComparison",
    "QueryResult",
    "Sample",
    "Sampler",
    "bindings",
    "check_overrides",
    "compare",
    "explain_queries",
    "read_baseline",
    "render_catalog",
    "render_query",
    "select_queries",
    "write_baseline",
]
