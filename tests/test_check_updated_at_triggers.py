"""updated_at_triggers: updatedAt/updated_at columns that no enabled trigger maintains."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pgrunbook.discover import discover
from pgrunbook.dsn import ConnInfo
from pgrunbook.findings import Severity
from pgrunbook.reference import ALI_SCHEMA, Naming
from tests.support import Template, execute

CHECK = "updated_at_triggers"
STALE = "rows updated outside the ORM keep a stale timestamp"


def _expected(naming: Naming) -> set[str]:
    return {
        f"public.{naming.table(t.name)}"
        for t in ALI_SCHEMA.tables
        if any(c.name == "updatedAt" for c in t.columns)
    }


@pytest.mark.parametrize("naming", list(Naming))
def test_seeded_database_lists_every_updated_at_table(
    naming: Naming, templates: dict[Naming, Template], make_db: Callable[..., ConnInfo]
) -> None:
    info = make_db(templates[naming].name)
    report = discover(info, only=(CHECK,))
    findings = report.by_check(CHECK)
    expected = _expected(naming)
    assert len(expected) == 7
    assert {f.object for f in findings} == expected
    assert len(findings) == len(expected)
    for f in findings:
        assert f.severity is Severity.WARNING
        assert f.details["column"] == naming.column("updatedAt")
        assert f.details["disabled_triggers"] == []
        assert "no trigger maintains it" in f.message and STALE in f.message
        assert f.fix == "pgrunbook apply triggers"
    assert report.facts[CHECK] == {"columns": 7, "maintained": 0, "unmaintained": 7}


TRIGGERS = """
CREATE FUNCTION set_updated_at() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN NEW."updatedAt" := CURRENT_TIMESTAMP; RETURN NEW; END $$;
CREATE FUNCTION touch_last_login() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN NEW."lastLoginAt" := CURRENT_TIMESTAMP; RETURN NEW; END $$;
CREATE FUNCTION set_updated_at_utc() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN NEW."updatedAtUtc" := now() AT TIME ZONE 'UTC'; RETURN NEW; END $$;
-- the runbook's function by name (its body need not spell the column)
CREATE FUNCTION update_updated_at_camel() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN NEW := jsonb_populate_record(NEW, jsonb_build_object('updated' || 'At', now()));
     RETURN NEW; END $$;
CREATE FUNCTION update_updated_at_snake() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN NEW.updated_at := now(); RETURN NEW; END $$;
-- working: maintained
CREATE TRIGGER "trg_User_updated_at" BEFORE UPDATE ON "User"
  FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER "trg_Wallet_updated_at" BEFORE UPDATE ON "Wallet"
  FOR EACH ROW EXECUTE FUNCTION update_updated_at_camel();
-- disabled: does not count
CREATE TRIGGER "trg_Room_updated_at" BEFORE UPDATE ON "Room"
  FOR EACH ROW EXECUTE FUNCTION set_updated_at();
ALTER TABLE "Room" DISABLE TRIGGER "trg_Room_updated_at";
-- sets another column: does not count
CREATE TRIGGER "trg_Message_touch" BEFORE UPDATE ON "Message"
  FOR EACH ROW EXECUTE FUNCTION touch_last_login();
CREATE TRIGGER "trg_Message_utc" BEFORE UPDATE ON "Message"
  FOR EACH ROW EXECUTE FUNCTION set_updated_at_utc();
-- AFTER, or per statement: too late / no row to set
CREATE TRIGGER "trg_Gift_after" AFTER UPDATE ON "Gift"
  FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER "trg_Report_statement" BEFORE UPDATE ON "Report"
  FOR EACH STATEMENT EXECUTE FUNCTION set_updated_at();
-- the snake_case function on a camelCase column
CREATE TRIGGER "trg_RoomMember_updated_at" BEFORE UPDATE ON "RoomMember"
  FOR EACH ROW EXECUTE FUNCTION update_updated_at_snake();
"""


def test_only_enabled_before_update_row_triggers_that_set_the_column_count(db: ConnInfo) -> None:
    execute(db, TRIGGERS)
    report = discover(db, only=(CHECK,))
    found = {f.object: f for f in report.by_check(CHECK)}
    assert set(found) == {
        "public.Room",
        "public.Message",
        "public.Gift",
        "public.Report",
        "public.RoomMember",
    }
    room = found["public.Room"]
    assert room.severity is Severity.WARNING
    assert room.details["disabled_triggers"] == ["trg_Room_updated_at"]
    assert "its trigger is disabled (trg_Room_updated_at)" in room.message
    for name in ("public.Message", "public.Gift", "public.Report", "public.RoomMember"):
        assert found[name].details["disabled_triggers"] == []
        assert "no trigger maintains it" in found[name].message
    assert report.facts[CHECK] == {"columns": 7, "maintained": 2, "unmaintained": 5}


def test_a_maintained_snake_case_column_does_not_fire(empty_db: ConnInfo) -> None:
    execute(
        empty_db,
        """
        CREATE TABLE orders (id int PRIMARY KEY, updated_at timestamptz NOT NULL DEFAULT now());
        CREATE TABLE plain (id int PRIMARY KEY, updated timestamptz);
        CREATE FUNCTION update_updated_at_snake() RETURNS trigger LANGUAGE plpgsql AS
          $$ BEGIN NEW.updated_at := now(); RETURN NEW; END $$;
        CREATE TRIGGER trg_orders_updated_at BEFORE UPDATE ON orders
          FOR EACH ROW EXECUTE FUNCTION update_updated_at_snake();
        """,
    )
    report = discover(empty_db, only=(CHECK,))
    assert report.by_check(CHECK) == []
    assert report.facts[CHECK] == {"columns": 1, "maintained": 1, "unmaintained": 0}
