"""sequences: sequences and the integer columns they feed, past 50% / 90% of their range."""

from __future__ import annotations

from pgrunbook.config import Config
from pgrunbook.discover import discover
from pgrunbook.dsn import ConnInfo
from pgrunbook.findings import Severity
from tests.support import ROLE_PASSWORD, execute

CHECK = "sequences"
INT_MAX = 2**31 - 1

SCHEMA = f"""
-- serial (an integer sequence owned by an integer column), referenced by a foreign key
CREATE TABLE half (id serial PRIMARY KEY);
CREATE TABLE half_child (id int PRIMARY KEY, half_id int REFERENCES half (id));
SELECT setval('half_id_seq', {INT_MAX // 2 + 1000});
CREATE TABLE nearly (id serial PRIMARY KEY);
SELECT setval('nearly_id_seq', {INT_MAX // 10 * 9 + 1000});
-- a bigint sequence feeding an integer column: the column's range is the limit
CREATE TABLE narrow (id int PRIMARY KEY);
CREATE SEQUENCE narrow_seq AS bigint OWNED BY narrow.id;
ALTER TABLE narrow ALTER COLUMN id SET DEFAULT nextval('narrow_seq');
SELECT setval('narrow_seq', {INT_MAX // 10 * 9 + 1000});
-- identity: changing the column's type changes its sequence's
CREATE TABLE ident (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY);
SELECT setval(pg_get_serial_sequence('ident', 'id'), {INT_MAX // 10 * 6});
-- a smallint sequence with its own maximum, feeding nothing
CREATE SEQUENCE small_seq AS smallint MAXVALUE 1000;
SELECT setval('small_seq', 600);
-- an integer sequence feeding a bigint column through its default: the sequence limits
CREATE SEQUENCE shared_seq AS integer;
CREATE TABLE wide (id bigint PRIMARY KEY DEFAULT nextval('shared_seq'));
SELECT setval('shared_seq', {INT_MAX // 10 * 9 + 1000});
-- descending, towards the integer column's minimum
CREATE SEQUENCE down_seq INCREMENT -1;
CREATE TABLE down (id int PRIMARY KEY DEFAULT nextval('down_seq'));
SELECT setval('down_seq', -{INT_MAX // 10 * 7});
-- do not fire: fresh serial, used serial, a CYCLE sequence feeding nothing, another schema
CREATE TABLE fresh (id serial PRIMARY KEY);
CREATE TABLE used (id serial PRIMARY KEY);
SELECT nextval('used_id_seq');
CREATE SEQUENCE ring AS smallint MAXVALUE 10 CYCLE;
SELECT setval('ring', 9);
CREATE SCHEMA other;
CREATE TABLE other.t (id serial PRIMARY KEY);
SELECT setval('other.t_id_seq', {INT_MAX - 10});
"""


def _ratio(last: int, low: int, high: int) -> float:
    return (last - low) / (high - low)


def test_sequences_and_columns_past_their_thresholds(empty_db: ConnInfo) -> None:
    execute(empty_db, SCHEMA)
    report = discover(empty_db, only=(CHECK,))
    found = {f.object: f for f in report.by_check(CHECK)}
    assert set(found) == {
        "public.half_id_seq",
        "public.nearly_id_seq",
        "public.narrow_seq",
        "public.ident_id_seq",
        "public.small_seq",
        "public.shared_seq",
        "public.down_seq",
    }

    half = found["public.half_id_seq"]
    assert half.severity is Severity.WARNING
    assert half.details["column"] == "public.half.id"
    assert half.details["type"] == "integer"
    assert half.details["last_value"] == INT_MAX // 2 + 1000
    assert half.details["max_value"] == INT_MAX
    assert half.details["used_ratio"] == _ratio(INT_MAX // 2 + 1000, 1, INT_MAX)
    assert half.details["limited_by"] == "both"
    assert half.details["referenced_by"] == ["public.half_child.half_id"]
    assert half.fix == (
        "-- rewrites the table and its indexes under an ACCESS EXCLUSIVE lock\n"
        'ALTER TABLE "public"."half" ALTER COLUMN "id" TYPE bigint;\n'
        'ALTER TABLE "public"."half_child" ALTER COLUMN "half_id" TYPE bigint;\n'
        'ALTER SEQUENCE "public"."half_id_seq" AS bigint;'
    )

    nearly = found["public.nearly_id_seq"]
    assert nearly.severity is Severity.CRITICAL
    assert nearly.details["used_ratio"] == _ratio(INT_MAX // 10 * 9 + 1000, 1, INT_MAX)

    narrow = found["public.narrow_seq"]
    assert narrow.severity is Severity.CRITICAL
    assert narrow.details["sequence_type"] == "bigint"
    assert narrow.details["type"] == "integer"
    assert narrow.details["max_value"] == INT_MAX
    assert narrow.details["limited_by"] == "column"
    assert narrow.fix == (
        "-- rewrites the table and its indexes under an ACCESS EXCLUSIVE lock\n"
        'ALTER TABLE "public"."narrow" ALTER COLUMN "id" TYPE bigint;'
    )

    ident = found["public.ident_id_seq"]
    assert ident.severity is Severity.WARNING
    assert ident.fix is not None and "ALTER SEQUENCE" not in ident.fix

    small = found["public.small_seq"]
    assert small.severity is Severity.WARNING
    assert small.details["column"] is None
    assert small.details["type"] == "smallint"
    assert small.details["max_value"] == 1000
    assert small.details["used_ratio"] == _ratio(600, 1, 1000)
    assert small.details["remaining"] == 400
    assert small.fix == 'ALTER SEQUENCE "public"."small_seq" AS bigint NO MAXVALUE;'

    shared = found["public.shared_seq"]
    assert shared.severity is Severity.CRITICAL
    assert shared.details["column"] == "public.wide.id"
    assert shared.details["limited_by"] == "sequence"
    assert shared.fix == 'ALTER SEQUENCE "public"."shared_seq" AS bigint;'

    down = found["public.down_seq"]
    assert down.severity is Severity.WARNING
    assert down.details["last_value"] == -(INT_MAX // 10 * 7)
    assert down.details["min_value"] == -(2**31)
    assert down.details["max_value"] == -1
    assert down.details["used_ratio"] == (-1 + INT_MAX // 10 * 7) / (-1 + 2**31)
    assert down.details["limited_by"] == "column"
    assert "limit -2,147,483,648" in down.message

    assert report.facts[CHECK]["unused_or_hidden"] == 1  # fresh_id_seq


def test_thresholds_come_from_the_config(empty_db: ConnInfo) -> None:
    execute(empty_db, f"CREATE TABLE t (id serial); SELECT setval('t_id_seq', {INT_MAX // 5});")
    assert discover(empty_db, only=(CHECK,)).by_check(CHECK) == []
    config = Config(checks={CHECK: {"warning_ratio": 0.15, "critical_ratio": 0.19}})
    (finding,) = discover(empty_db, only=(CHECK,), config=config).by_check(CHECK)
    assert finding.severity is Severity.CRITICAL
    assert finding.object == "public.t_id_seq"


def test_a_sequence_this_role_may_not_read_is_skipped(empty_db: ConnInfo, login_role: str) -> None:
    # PUBLIC may connect and use schema public, but not read another role's sequence
    execute(empty_db, f"CREATE TABLE t (id serial); SELECT setval('t_id_seq', {INT_MAX - 5});")
    role = empty_db.with_params(user=login_role, password=ROLE_PASSWORD)
    report = discover(role, only=(CHECK,))
    assert report.by_check(CHECK) == []
    assert report.facts[CHECK]["unused_or_hidden"] == 1
    assert len(discover(empty_db, only=(CHECK,)).by_check(CHECK)) == 1


def test_the_seeded_database_does_not_fire(db: ConnInfo) -> None:
    report = discover(db, only=(CHECK,))
    assert report.by_check(CHECK) == []
    assert report.checks[0].status == "ran"
