"""Which rows a retention policy selects in this database (its table, key and predicate)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from psycopg import sql

from pgrunbook.catalog import Catalog, Table
from pgrunbook.errors import ConfigError
from pgrunbook.profile.model import RetentionPolicy
from pgrunbook.resolve import find_column, find_table


@dataclass(frozen=True)
class ResolvedPolicy:
    """A policy bound to a table of this database: the rows ``predicate`` selects."""

    policy: RetentionPolicy
    table: Table
    key: str  # the single-column primary key the batches go by
    column: str  # the timestamp column, in this database's naming
    predicate: sql.Composable

    @property
    def name(self) -> str:
        return self.policy.name

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.table.schema, self.table.name)


@dataclass(frozen=True)
class PolicySkip:
    policy: str
    reason: str


def _primary_key(table: Table) -> tuple[str | None, str]:
    """The single primary-key column's name, or None and why not."""
    for constraint in table.constraints:
        if constraint.type != "p":
            continue
        nums = constraint.columns or []
        if len(nums) != 1:
            return None, "its primary key has several columns (batches need a single-column key)"
        for column in table.columns:
            if column.num == nums[0]:
                return column.name, ""
    return None, "it has no primary key (batches go by primary key)"


def resolve_policies(
    catalog: Catalog, policies: Sequence[RetentionPolicy], names: Sequence[str] = ()
) -> tuple[list[ResolvedPolicy], list[PolicySkip]]:
    """The policies (all, or those named) that apply here, and why the others are skipped.

    An unknown name in ``names`` is a ConfigError naming the known policies.
    """
    known = {p.name: p for p in policies}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(
            f"unknown retention policy {', '.join(map(repr, unknown))}",
            f"known policies: {', '.join(known) or '(none)'}",
        )
    chosen = [known[n] for n in dict.fromkeys(names)] if names else list(policies)
    resolved: list[ResolvedPolicy] = []
    skipped: list[PolicySkip] = []
    for policy in chosen:
        table = find_table(catalog, policy.table)
        if table is None:
            skipped.append(PolicySkip(policy.name, f"table {policy.table!r} not found"))
            continue
        predicate = policy.render(table)
        if isinstance(predicate, str):
            skipped.append(PolicySkip(policy.name, predicate))
            continue
        key, why = _primary_key(table)
        if key is None:
            skipped.append(PolicySkip(policy.name, f"{table.qualified}: {why}"))
            continue
        column = find_column(table, policy.column)
        assert column is not None  # render() found it
        resolved.append(ResolvedPolicy(policy, table, key, column.name, predicate))
    return resolved, skipped
