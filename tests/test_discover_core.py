"""The discovery framework: report, thresholds from the config file, CLI exit codes, errors."""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

from pgrunbook.cli.main import run
from pgrunbook.config import Config, load_config
from pgrunbook.discover import Check, CheckResult, Context, discover
from pgrunbook.discover.check import NoThresholds
from pgrunbook.discover.registry import CHECKS
from pgrunbook.dsn import MASK, ConnInfo
from pgrunbook.errors import ConfigError, PgRunbookError
from pgrunbook.findings import Severity
from tests.support import ROLE_PASSWORD, PgServer, execute, scalar


def churn(info: ConnInfo, dead: int, live: int) -> None:
    """A table with exactly ``live`` live rows and ``dead`` dead ones, autovacuum off."""
    execute(
        info,
        "CREATE TABLE churn (id int PRIMARY KEY, v int) WITH (autovacuum_enabled = off);"
        f"INSERT INTO churn SELECT g, 0 FROM generate_series(1, {live}) g;"
        f"DELETE FROM churn WHERE id <= {dead};"
        f"INSERT INTO churn SELECT g, 0 FROM generate_series(1, {dead}) g;",
    )


def test_dead_tuples_over_the_runbook_threshold(empty_db: ConnInfo) -> None:
    churn(empty_db, dead=300, live=1000)  # 300 dead of 1300 row versions: 23%
    report = discover(empty_db, only=("dead_tuples",))
    [finding] = report.by_check("dead_tuples")
    assert finding.severity is Severity.WARNING
    assert finding.object == "public.churn"
    assert finding.details["dead_tuples"] == 300
    assert finding.details["live_tuples"] == 1000
    assert finding.details["dead_ratio"] == pytest.approx(300 / 1300)
    assert finding.fix == 'VACUUM (ANALYZE) "public"."churn";'
    execute(empty_db, "VACUUM churn")
    assert discover(empty_db, only=("dead_tuples",)).findings == []


def test_dead_tuples_below_the_threshold_do_not_fire(empty_db: ConnInfo) -> None:
    churn(empty_db, dead=100, live=1000)  # 9%
    assert discover(empty_db, only=("dead_tuples",)).findings == []


def test_threshold_from_the_config_file(empty_db: ConnInfo, tmp_path: Path) -> None:
    churn(empty_db, dead=100, live=1000)
    path = tmp_path / "pgrunbook.toml"
    path.write_text("[checks.dead_tuples]\nmax_dead_ratio = 0.05\ncritical_dead_ratio = 0.08\n")
    report = discover(empty_db, only=("dead_tuples",), config=load_config(path))
    [finding] = report.by_check("dead_tuples")
    assert finding.severity is Severity.CRITICAL
    assert finding.details["threshold"] == 0.05


def test_tables_inventory_and_problems(empty_db: ConnInfo) -> None:
    execute(
        empty_db,
        "CREATE TABLE keyed (id int PRIMARY KEY, body text);"
        "INSERT INTO keyed SELECT g, repeat('x', 3000) FROM generate_series(1, 50) g;"
        "ANALYZE keyed;"
        "CREATE TABLE heap_only (v int) WITH (autovacuum_enabled = off);"
        "INSERT INTO heap_only SELECT g FROM generate_series(1, 2000) g;",
    )
    report = discover(empty_db, only=("tables",))
    problems = {(f.object, f.details["problem"], f.severity) for f in report.findings}
    assert problems == {
        ("public.heap_only", "never_analyzed", Severity.WARNING),
        ("public.heap_only", "no_primary_key", Severity.WARNING),
    }
    rows = {row["name"]: row for row in report.facts["tables"]}
    assert rows["public.keyed"]["estimated_rows"] == 50
    assert rows["public.keyed"]["toast_bytes"] > 0  # 3000-byte values are compressed or toasted
    assert rows["public.keyed"]["total_bytes"] == scalar(
        empty_db, "SELECT pg_total_relation_size('keyed')"
    )
    assert rows["public.keyed"]["last_analyze_age_seconds"] is not None
    assert rows["public.heap_only"]["last_analyze"] is None


def test_clean_tables_have_no_findings(db: ConnInfo) -> None:
    report = discover(db, only=("tables", "dead_tuples"))
    assert report.findings == []
    assert len(report.facts["tables"]) == 12


def test_unknown_check_and_bad_config_are_one_line(empty_db: ConnInfo, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown check 'nope'; known checks: naming, tables"):
        discover(empty_db, only=("nope",))
    bad = tmp_path / "bad.toml"
    bad.write_text("[checks.dead_tuples]\nmax_dead_ratio = 'high'\n")
    with pytest.raises(ConfigError, match=r"max_dead_ratio = 'high' is not a float"):
        discover(empty_db, only=("dead_tuples",), config=load_config(bad))
    bad.write_text("[checks.dead_tuples]\nmax_ratio = 0.2\n")
    with pytest.raises(ConfigError, match=r"unknown key 'max_ratio'.*known keys: critical_dead"):
        discover(empty_db, only=("dead_tuples",), config=load_config(bad))
    bad.write_text("[checks\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")


def test_disabled_check_does_not_run(empty_db: ConnInfo) -> None:
    churn(empty_db, dead=300, live=1000)
    report = discover(empty_db, config=Config(checks={"dead_tuples": {"enabled": False}}))
    assert "dead_tuples" not in {c.id for c in report.checks}
    assert len(report.checks) == len(CHECKS) - 1


def test_missing_schema_is_refused(empty_db: ConnInfo) -> None:
    with pytest.raises(ConfigError, match="schema 'nowhere' does not exist in database"):
        discover(empty_db, schema="nowhere")


def _writes(ctx: Context, limits: NoThresholds) -> CheckResult:
    ctx.conn.execute("CREATE TABLE sneaky (id int)")
    return CheckResult()


def test_discovery_session_is_read_only(empty_db: ConnInfo) -> None:
    """Every check runs in a read-only session: a write fails instead of slipping through."""
    sneaky = Check(id="sneaky", title="writes", run=_writes, thresholds=NoThresholds())
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        discover(empty_db, checks=[sneaky])
    assert scalar(empty_db, "SELECT to_regclass('sneaky') IS NULL") is True


def test_cli_json_and_fail_on(capsys: pytest.CaptureFixture[str], empty_db: ConnInfo) -> None:
    churn(empty_db, dead=300, live=1000)
    dsn = empty_db.conninfo()
    assert run(["discover", "--dsn", dsn, "--check", "dead_tuples", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert [f["check"] for f in document["findings"]] == ["dead_tuples"]
    assert set(document["findings"][0]) == {
        "check",
        "severity",
        "object",
        "message",
        "details",
        "fix",
    }
    assert document["checks"][0]["status"] == "ran"
    assert document["statistics"]["collecting_seconds"] >= 0
    code = run(["discover", "--dsn", dsn, "--check", "dead_tuples", "--fail-on", "warning"])
    out = capsys.readouterr().out
    assert code == 1
    assert "23.1% dead tuples" in out
    assert run(["discover", "--dsn", dsn, "--check", "dead_tuples", "--fail-on", "critical"]) == 0
    capsys.readouterr()
    assert run(["discover", "--dsn", dsn, "--check", "nope"]) == 2
    assert "error: unknown check 'nope'" in capsys.readouterr().err


def test_an_exclusively_locked_table_makes_discovery_give_up_quickly(empty_db: ConnInfo) -> None:
    execute(empty_db, "CREATE TABLE busy (id int PRIMARY KEY)")
    with psycopg.connect(empty_db.conninfo()) as holder:
        holder.execute("LOCK TABLE busy IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        with pytest.raises(PgRunbookError, match=r"locked exclusively .* within 200 ms"):
            discover(empty_db, only=("tables",), lock_timeout_ms=200)
        assert time.monotonic() - started < 5
    assert discover(empty_db, only=("tables",)).checks[0].status == "ran"


def test_a_role_without_privileges_gets_reasons_not_a_crash(
    capsys: pytest.CaptureFixture[str], pg_server: PgServer, db: ConnInfo, login_role: str
) -> None:
    """Catalog checks still run; row counts the role may not read say so, one line each."""
    if pg_server.local is None:
        pytest.skip("logs in as a new role, which depends on the embedded server's pg_hba.conf")
    weak = db.with_params(user=login_role, password=ROLE_PASSWORD)
    url = weak.display().replace(MASK, quote(ROLE_PASSWORD, safe=""), 1)
    assert run(["discover", "--dsn", url, "--json"]) == 0
    out, err = capsys.readouterr()
    assert ROLE_PASSWORD not in out + err
    statuses = {c["id"]: c for c in json.loads(out)["checks"]}
    refused = {k for k, c in statuses.items() if c["status"] == "failed"}
    assert refused == {"orphans", "constraint_violations", "retention"}
    assert statuses["orphans"]["reason"].startswith("not allowed for this role (permission denied")
    assert {c["status"] for k, c in statuses.items() if k not in refused} == {"ran"}
