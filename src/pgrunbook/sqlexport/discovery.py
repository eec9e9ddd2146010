"""Script 01, discovery (runbook section 3, step 1): what to look at before changing anything.

The runbook's "what to look for", as read-only queries for this database's schema: tables
and sizes, dead tuples over 10%, unused indexes, invalid indexes, relations without an
index, orphan rows, the existing indexes and the naming convention. The queries are built
on the SQL ``pgrunbook discover`` runs (the catalog's ``TABLES_SQL`` and ``INDEXES_SQL``,
the statistics window, the builds in progress, the orphan predicates), and every threshold
is the default of the matching check's ``Thresholds``. The checks that judge in Python
(unused, missing indexes, naming) are written out in SQL here with the same rules.
"""

from __future__ import annotations

from typing import Any, Final

from psycopg import sql

from pgrunbook import catalog
from pgrunbook.change.step import StepContext
from pgrunbook.discover.checks import dead_tuples, missing_indexes, naming, orphans
from pgrunbook.discover.checks import unused_indexes as unused
from pgrunbook.discover.context import STATS_WINDOW_SQL
from pgrunbook.indexsql import BUILDS_IN_PROGRESS_SQL
from pgrunbook.relations import Relation, all_relations
from pgrunbook.sqlexport import script
from pgrunbook.sqlexport.script import Body
from pgrunbook.violations import LOCK_TIMEOUT_MS, listing_query, source

STATEMENT_TIMEOUT: Final = "120s"  # per query; the orphan counts read whole tables
LOCK_TIMEOUT: Final = f"{LOCK_TIMEOUT_MS}ms"

# The catalog's queries, as subqueries of the report queries below.
_TABLES: Final = sql.SQL(catalog.TABLES_SQL)
_INDEXES: Final = sql.SQL(catalog.INDEXES_SQL)

TABLES_REPORT_SQL: Final = sql.SQL(
    """
SELECT t.name AS "table", t.kind, greatest(t.reltuples, 0)::int8 AS estimated_rows,
       t.n_live_tup AS live_tuples, t.n_dead_tup AS dead_tuples,
       t.total_bytes, pg_size_pretty(t.total_bytes) AS total_size,
       pg_size_pretty(t.table_bytes) AS table_size, pg_size_pretty(t.index_bytes) AS index_size,
       t.has_primary_key,
       greatest(t.last_vacuum, t.last_autovacuum) AS last_vacuumed,
       greatest(t.last_analyze, t.last_autoanalyze) AS last_analyzed
  FROM ({tables}) AS t
 ORDER BY t.total_bytes DESC, t.name
"""
)

# dead_tuples: dead / (live + dead) over the threshold, with at least min_dead_tuples dead.
DEAD_TUPLES_REPORT_SQL: Final = sql.SQL(
    """
SELECT t.name AS "table", t.n_live_tup AS live_tuples, t.n_dead_tup AS dead_tuples,
       round(100 * t.n_dead_tup::numeric / nullif(t.n_live_tup + t.n_dead_tup, 0), 1)
           AS dead_percent,
       CASE WHEN t.n_dead_tup::float8 / nullif(t.n_live_tup + t.n_dead_tup, 0)
                 >= %(critical_dead_ratio)s
            THEN 'critical' ELSE 'warning' END AS severity,
       t.last_autovacuum, t.last_vacuum
  FROM ({tables}) AS t
 WHERE t.n_dead_tup >= %(min_dead_tuples)s
   AND t.n_dead_tup::float8 / nullif(t.n_live_tup + t.n_dead_tup, 0) > %(max_dead_ratio)s
 ORDER BY t.n_dead_tup::float8 / nullif(t.n_live_tup + t.n_dead_tup, 0) DESC, t.name
"""
)

# unused_indexes: indexes that enforce nothing, never scanned (or rarely, for the writes
# their table takes); statistics younger than the observation window prove nothing.
UNUSED_REPORT_SQL: Final = sql.SQL(
    """
SELECT i.name AS index, t.name AS "table", i.idx_scan, w.writes AS table_writes,
       pg_size_pretty(i.bytes) AS size,
       CASE WHEN s.now - greatest(s.stats_reset, s.started_at)
                 < %(min_observation_days)s * interval '1 day'
            THEN 'insufficient_evidence'
            WHEN i.idx_scan = 0 THEN 'unused'
            ELSE 'rarely_used' END AS verdict,
       round((extract(epoch FROM s.now - greatest(s.stats_reset, s.started_at)) / 86400)::numeric,
             1) AS statistics_days,
       i.definition
  FROM ({indexes}) AS i
  JOIN ({tables}) AS t ON t.oid = i.table_oid
  CROSS JOIN ({stats}) AS s
  CROSS JOIN LATERAL (SELECT coalesce(t.n_tup_ins, 0) + coalesce(t.n_tup_upd, 0)
                             + coalesce(t.n_tup_del, 0) AS writes) AS w
 WHERE i.valid AND i.constraint_type IS NULL AND NOT i.is_unique AND i.idx_scan IS NOT NULL
   AND t.kind = 'r' AND NOT t.is_partition
   AND (i.idx_scan = 0
        OR (w.writes >= %(min_writes)s AND i.idx_scan::float8 / w.writes < %(max_scans_per_write)s))
 ORDER BY i.bytes DESC, i.name
"""
)

# invalid_indexes: leftovers of a failed concurrent build (or a build still running).
INVALID_REPORT_SQL: Final = sql.SQL(
    """
SELECT i.name AS index, t.name AS "table", i.oid IN ({builds}) AS build_in_progress,
       pg_size_pretty(i.bytes) AS size, i.definition
  FROM ({indexes}) AS i
  JOIN ({tables}) AS t ON t.oid = i.table_oid
 WHERE NOT i.valid
 ORDER BY t.name, i.name
"""
)

RELATION_ROW_SQL: Final = sql.SQL("({child}, {columns}::text[], {label}, {source}, {fk})")

# missing_indexes: a valid, non-partial btree index whose first n key columns are the
# relation's n columns (any order) covers it; a hash index covers a single column.
MISSING_REPORT_SQL: Final = sql.SQL(
    """
WITH relation(child, columns, relation, source, foreign_key) AS (
    VALUES {relations}
), resolved AS (
    SELECT r.*, t.oid AS child_oid, t.kind,
           greatest(greatest(t.reltuples, 0)::int8, coalesce(t.n_live_tup, 0)) AS rows,
           ARRAY(SELECT a.attnum::int
                   FROM unnest(r.columns) AS u(name)
                   JOIN pg_attribute a ON a.attrelid = t.oid::oid AND a.attname = u.name
                  ORDER BY 1) AS attnums
      FROM relation AS r
      JOIN ({tables}) AS t ON t.name = r.child
     WHERE NOT t.is_partition
)
SELECT r.relation, r.source, r.foreign_key, r.rows AS estimated_rows,
       CASE WHEN r.rows >= %(min_rows)s THEN 'warning' ELSE 'info' END AS severity,
       CASE WHEN r.kind = 'p' THEN 'partitioned: create it on each partition, then the parent'
            END AS note
  FROM resolved AS r
 WHERE cardinality(r.attnums) = cardinality(r.columns)
   AND NOT EXISTS (
       SELECT 1
         FROM pg_index i
         JOIN pg_class ic ON ic.oid = i.indexrelid
         JOIN pg_am am ON am.oid = ic.relam
        WHERE i.indrelid = r.child_oid::oid AND i.indisvalid AND i.indpred IS NULL
          AND cardinality(r.attnums) <= i.indnkeyatts
          AND ((am.amname = 'btree'
                AND ARRAY(SELECT k.attnum::int
                            FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, position)
                           WHERE k.position <= cardinality(r.attnums)
                           ORDER BY 1) = r.attnums)
               OR (am.amname = 'hash' AND cardinality(r.attnums) = 1
                   AND (i.indkey::int2[])[array_lower(i.indkey::int2[], 1)] = r.attnums[1])))
 ORDER BY r.rows DESC, r.relation
"""
)

ORPHAN_COUNT_SQL: Final = sql.SQL(
    "SELECT {label} AS relation, {kind} AS source, count(*) AS orphan_rows "
    "FROM {source} WHERE {predicate}"
)
UNION_ALL: Final = sql.SQL("\nUNION ALL\n")
ORDERED_SQL: Final = sql.SQL("{}\nORDER BY 1")

EXISTING_REPORT_SQL: Final = sql.SQL(
    """
SELECT t.name AS "table", i.name AS index, i.valid, i.constraint_type, i.idx_scan,
       pg_size_pretty(i.bytes) AS size, i.definition
  FROM ({indexes}) AS i
  JOIN ({tables}) AS t ON t.oid = i.table_oid
 ORDER BY t.name, i.name
"""
)

# naming: each distinct name classified as naming.classify() does (leading underscores
# dropped; a single lowercase word or a caseless name is neutral and does not vote), then
# naming.judge()'s verdict: the leading convention wins when the names that break it are at
# most max_minority_share of those that vote.
NAMING_REPORT_SQL: Final = sql.SQL(
    """
WITH own AS (
    SELECT t.oid, t.name FROM ({tables}) AS t
     WHERE NOT t.is_partition AND t.name <> ALL(%(tool_tables)s::text[])
), names AS (
    SELECT 'tables' AS kind, o.name FROM own AS o
    UNION
    SELECT 'columns', a.attname::text
      FROM own AS o
      JOIN pg_attribute a ON a.attrelid = o.oid::oid AND a.attnum > 0 AND NOT a.attisdropped
), classified AS (
    SELECT n.kind,
           CASE WHEN b.bare ~ %(word)s OR b.bare ~ %(caseless)s THEN 'neutral'
                WHEN b.bare ~ %(camel)s THEN 'camel'
                WHEN b.bare ~ %(snake)s THEN 'snake'
                ELSE 'other' END AS style
      FROM names AS n
      CROSS JOIN LATERAL (SELECT ltrim(n.name, '_') AS bare) AS b
), counted AS (
    SELECT kind,
           count(*) FILTER (WHERE style = 'camel') AS camel,
           count(*) FILTER (WHERE style = 'snake') AS snake,
           count(*) FILTER (WHERE style = 'neutral') AS neutral,
           count(*) FILTER (WHERE style = 'other') AS other
      FROM classified
     GROUP BY kind
)
SELECT kind, camel, snake, neutral, other,
       CASE WHEN camel + snake + other = 0 THEN 'unknown'
            WHEN (camel + snake + other - greatest(camel, snake))::float8
                 / (camel + snake + other) > %(max_minority_share)s THEN 'mixed'
            WHEN snake > camel THEN 'snake_case'
            ELSE 'camelCase' END AS convention
  FROM counted
 ORDER BY kind DESC
"""
)


def _params(ctx: StepContext) -> dict[str, Any]:
    return {"schema": ctx.schema}


def _fmt(template: sql.SQL, **extra: sql.Composable) -> sql.Composed:
    return template.format(
        tables=_TABLES,
        indexes=_INDEXES,
        stats=sql.SQL(STATS_WINDOW_SQL),
        builds=sql.SQL(BUILDS_IN_PROGRESS_SQL),
        **extra,
    )


def tables_query(ctx: StepContext) -> str:
    return script.statement(ctx.conn, _fmt(TABLES_REPORT_SQL), _params(ctx))


def dead_tuples_query(ctx: StepContext) -> str:
    """The tables over the runbook's 10% dead tuples (also script 07's bloat check)."""
    limits = dead_tuples.CHECK.thresholds
    params = {
        **_params(ctx),
        "max_dead_ratio": limits.max_dead_ratio,
        "critical_dead_ratio": limits.critical_dead_ratio,
        "min_dead_tuples": limits.min_dead_tuples,
    }
    return script.statement(ctx.conn, _fmt(DEAD_TUPLES_REPORT_SQL), params)


def unused_indexes_query(ctx: StepContext) -> str:
    """Indexes never (or rarely) scanned, with the verdict (also script 07's)."""
    limits = unused.CHECK.thresholds
    params = {
        **_params(ctx),
        "min_observation_days": limits.min_observation_days,
        "min_writes": limits.min_writes,
        "max_scans_per_write": limits.max_scans_per_write,
    }
    return script.statement(ctx.conn, _fmt(UNUSED_REPORT_SQL), params)


def _invalid(ctx: StepContext) -> str:
    return script.statement(ctx.conn, _fmt(INVALID_REPORT_SQL), _params(ctx))


def _covered_relations(ctx: StepContext) -> list[Relation]:
    """Relations whose child columns exist, as the missing_indexes check takes them."""
    return [
        r
        for r in all_relations(ctx.catalog)
        if r.columns and all(r.child.column(c) is not None for c in r.columns)
    ]


def _missing(ctx: StepContext) -> str:
    relations = _covered_relations(ctx)
    if not relations:
        return script.comment("(no foreign keys and no inferred relations in this schema)")
    params: dict[str, Any] = {
        **_params(ctx),
        "min_rows": missing_indexes.CHECK.thresholds.min_rows,
    }
    rows = []
    for n, r in enumerate(relations):
        fields = {
            "child": r.child.name,
            "columns": list(r.columns),
            "label": r.label,
            "source": r.source,
            "fk": r.constraint.name if r.constraint else None,
        }
        params.update({f"{key}_{n}": value for key, value in fields.items()})
        rows.append(RELATION_ROW_SQL.format(**{k: sql.Placeholder(f"{k}_{n}") for k in fields}))
    query = _fmt(MISSING_REPORT_SQL, relations=sql.SQL(",\n           ").join(rows))
    return script.statement(ctx.conn, query, params)


def _orphans(ctx: StepContext) -> str:
    relations = all_relations(ctx.catalog)
    counted = orphans.candidates(relations)
    notes = [
        f"{r.label}: validated foreign key {r.constraint.name} (no orphans possible)"
        for r in relations
        if r.constraint is not None and r.validated
    ]
    if not counted:
        notes.append("(no unvalidated or inferred relations to count)")
        return script.comment("\n".join(notes))
    listing = [
        f"{r.label} ({r.source}): "
        + listing_query(r.child, orphans.orphan_predicate(r)).as_string(ctx.conn)
        for r in counted
    ]
    query = ORDERED_SQL.format(
        UNION_ALL.join(
            ORPHAN_COUNT_SQL.format(
                label=sql.Literal(r.label),
                kind=sql.Literal(r.source),
                source=source(r.child),
                predicate=orphans.orphan_predicate(r),
            )
            for r in counted
        )
    )
    return "\n".join(
        (
            script.comment("\n".join([*notes, "The rows themselves:", *listing])),
            script.statement(ctx.conn, query),
        )
    )


def _existing(ctx: StepContext) -> str:
    return script.statement(ctx.conn, _fmt(EXISTING_REPORT_SQL), _params(ctx))


def _naming(ctx: StepContext) -> str:
    limits = naming.CHECK.thresholds
    params = {
        **_params(ctx),
        "tool_tables": sorted(naming.TOOL_TABLES),
        "word": naming._WORD.pattern,
        "caseless": naming._CASELESS.pattern,
        "camel": naming._CAMEL.pattern,
        "snake": naming._SNAKE.pattern,
        "max_minority_share": limits.max_minority_share,
    }
    found = naming.detect(ctx.catalog, limits.max_minority_share)
    now = (
        f"When this script was generated: tables {found.tables.style}, columns "
        f"{found.columns.style}; new columns are spelled like {found.column_name('updatedAt')}."
    )
    return "\n".join(
        (script.comment(now), script.statement(ctx.conn, _fmt(NAMING_REPORT_SQL), params))
    )


def render(ctx: StepContext) -> Body:
    dead = dead_tuples.CHECK.thresholds
    used = unused.CHECK.thresholds
    sections = [
        script.section("1. Tables and sizes (largest first)", tables_query(ctx)),
        script.section(
            f"2. Dead tuples over {dead.max_dead_ratio:.0%} of a table "
            f"(at least {dead.min_dead_tuples} dead; fix: VACUUM (ANALYZE), script 07)",
            dead_tuples_query(ctx),
        ),
        script.section(
            "3. Unused indexes (candidates for removal; statistics younger than "
            f"{used.min_observation_days:g} days prove nothing)",
            unused_indexes_query(ctx),
        ),
        script.section(
            "4. Invalid indexes (left by a failed CREATE INDEX CONCURRENTLY: drop and rebuild)",
            _invalid(ctx),
        ),
        script.section(
            "5. Foreign keys and inferred relations without an index leading with them",
            _missing(ctx),
        ),
        script.section(
            "6. Orphan rows (unvalidated foreign keys and relations inferred from column names)",
            _orphans(ctx),
        ),
        script.section("7. Existing indexes", _existing(ctx)),
        script.section("8. Naming convention (camelCase or snake_case)", _naming(ctx)),
    ]
    text = script.join(
        "\n".join(
            (
                "BEGIN READ ONLY;",
                script.set_local(ctx.conn, "statement_timeout", STATEMENT_TIMEOUT),
                script.set_local(ctx.conn, "lock_timeout", LOCK_TIMEOUT),
            )
        ),
        *sections,
        "ROLLBACK;",
    )
    return Body(
        title="runbook step 1: discovery (read only)",
        changes="nothing: every query runs in one READ ONLY transaction that is rolled back",
        undo="nothing to undo",
        text=text,
        notes=(
            "Review: orphan rows, dead tuples over 10%, unused and invalid indexes, "
            "relations without an index, the naming convention.",
            "pgrunbook's way: pgrunbook discover (the same checks, with findings and fixes).",
        ),
    )
