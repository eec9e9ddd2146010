"""wraparound: the database's transaction-ID age against warning and critical ages.

A test cannot age a database by hundreds of millions of transactions, so it moves the
thresholds to the real age instead.
"""

from __future__ import annotations

from typing import Any

from psycopg import sql

from pgrunbook.config import Config
from pgrunbook.discover import discover
from pgrunbook.dsn import ConnInfo
from pgrunbook.findings import Severity
from tests.support import execute, rows, scalar

CHECK = "wraparound"
AGE_SQL = "SELECT age(datfrozenxid)::int8 FROM pg_database WHERE datname = current_database()"
OLDEST_SQL = """
SELECT c.relname, greatest(age(c.relfrozenxid), age(t.relfrozenxid))::int8
  FROM pg_class c
  LEFT JOIN pg_class t ON t.oid = c.reltoastrelid
 WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'm')
 ORDER BY 2 DESC, 1
 LIMIT 5
"""


def _age(info: ConnInfo) -> int:
    age = scalar(info, AGE_SQL)
    assert isinstance(age, int)
    return age


def _run(info: ConnInfo, **limits: Any) -> Any:
    return discover(info, only=(CHECK,), config=Config(checks={CHECK: limits}))


def test_age_past_the_warning_threshold(db: ConnInfo) -> None:
    execute(db, 'VACUUM (FREEZE) "Message"')  # now the youngest table: not among the oldest
    before = _age(db)
    assert before > 1
    report = _run(db, warning_age=before - 1)
    after = _age(db)
    (finding,) = report.by_check(CHECK)
    assert finding.severity is Severity.WARNING
    assert finding.object == f"database {db.dbname}"
    assert before <= finding.details["age"] <= after
    assert finding.details["warning_age"] == before - 1
    assert finding.details["wraparound_limit"] == 2**31
    assert finding.details["autovacuum_freeze_max_age"] == 200_000_000
    oldest = rows(db, OLDEST_SQL)
    assert [(t["table"], t["age"]) for t in finding.details["oldest_tables"]] == [
        (f"public.{name}", age) for name, age in oldest
    ]
    assert "public.Message" not in {t["table"] for t in finding.details["oldest_tables"]}
    assert len(oldest) == 5
    targets = sql.SQL(", ").join(sql.Identifier("public", str(name)) for name, _ in oldest)
    assert finding.fix == sql.SQL("VACUUM (FREEZE, ANALYZE) {};").format(targets).as_string()
    assert f"transaction ID age {finding.details['age']:,}" in finding.message


def test_age_past_the_critical_threshold(db: ConnInfo) -> None:
    age = _age(db)
    (finding,) = _run(db, warning_age=age // 2, critical_age=age - 1).by_check(CHECK)
    assert finding.severity is Severity.CRITICAL


def test_below_the_thresholds_nothing_fires(db: ConnInfo) -> None:
    age = _age(db)
    assert _run(db, warning_age=age + 1000).by_check(CHECK) == []
    report = discover(db, only=(CHECK,))
    assert report.by_check(CHECK) == []
    facts = report.facts[CHECK]
    assert age <= facts["age"] <= _age(db)
    assert len(facts["oldest_tables"]) == 5
