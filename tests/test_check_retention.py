"""retention: rows past the profile's retention policies (the cleanup's backlog)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pgrunbook.discover.run import discover
from pgrunbook.dsn import ConnInfo
from pgrunbook.findings import Finding, Severity
from pgrunbook.profile import Profile, load_profile
from pgrunbook.reference import Naming
from tests.support import Template, execute, rows

NAMINGS = [("db", Naming.PRISMA), ("snake_db", Naming.SNAKE)]


def _retention(info: ConnInfo, profile: Profile | None = None) -> tuple[list[Finding], Any]:
    report = discover(info, only=("retention",), profile=profile)
    assert [c.status for c in report.checks] == ["ran"]
    return report.by_check("retention"), report.facts.get("retention")


def _tokens_sql(naming: Naming, days: int) -> str:
    expires = naming.column("expiresAt")
    return (
        f'SELECT count(*), min("{expires}"), max("{expires}") '
        f'FROM "{naming.table("RefreshToken")}" WHERE "{expires}" < '
        f"(now() AT TIME ZONE 'UTC') - make_interval(days => {days})"
    )


def _notifications_sql(naming: Naming, days: int) -> str:
    created = naming.column("createdAt")
    return (
        f'SELECT count(*), min("{created}"), max("{created}") '
        f'FROM "{naming.table("Notification")}" WHERE "{naming.column("isRead")}" '
        f"AND \"{created}\" < (now() AT TIME ZONE 'UTC') - make_interval(days => {days})"
    )


@pytest.mark.parametrize(("fixture", "naming"), NAMINGS)
def test_seeded_backlog_exactly(
    request: pytest.FixtureRequest, fixture: str, naming: Naming, templates: dict[Naming, Template]
) -> None:
    info: ConnInfo = request.getfixturevalue(fixture)
    manifest = templates[naming].report.anomalies
    findings, facts = _retention(info)

    by_policy = {f.details["policy"]: f for f in findings}
    assert set(by_policy) == {"expired_refresh_tokens", "read_notifications"}
    assert all(f.severity is Severity.INFO for f in findings)
    tokens, notes = by_policy["expired_refresh_tokens"], by_policy["read_notifications"]
    assert tokens.details["count"] == manifest["refresh_tokens_expired_over_7_days"] > 0
    assert notes.details["count"] == manifest["read_notifications_over_30_days"] > 0
    assert tokens.object == f"public.{naming.table('RefreshToken')}"
    assert notes.object == f"public.{naming.table('Notification')}"
    for finding, query in (
        (tokens, _tokens_sql(naming, 7)),
        (notes, _notifications_sql(naming, 30)),
    ):
        count, oldest, newest = rows(info, query)[0]
        assert (finding.details["count"], finding.details["oldest"], finding.details["newest"]) == (
            count,
            oldest,
            newest,
        )
        assert finding.details["sampled"] is False
        assert finding.fix == "pgrunbook cleanup"
        assert len(rows(info, finding.details["select"])) == count
    assert tokens.details["column"] == naming.column("expiresAt")
    assert tokens.details["older_than_days"] == 7 and tokens.details["cadence"] == "daily"
    assert notes.details["older_than_days"] == 30 and notes.details["cadence"] == "weekly"
    rule = f"({naming.column('createdAt')} more than 30 days ago where {naming.column('isRead')})"
    assert rule in notes.message
    assert facts == [
        {
            "policy": "expired_refresh_tokens",
            "table": tokens.object,
            "count": tokens.details["count"],
        },
        {"policy": "read_notifications", "table": notes.object, "count": notes.details["count"]},
    ]


@pytest.mark.parametrize(("fixture", "naming"), NAMINGS)
def test_after_the_cleanup_nothing_is_left(
    request: pytest.FixtureRequest, fixture: str, naming: Naming
) -> None:
    info: ConnInfo = request.getfixturevalue(fixture)
    findings, _ = _retention(info)
    assert len(findings) == 2
    for finding in findings:
        execute(info, finding.details["delete"])
    findings, facts = _retention(info)
    assert findings == []
    assert [f["count"] for f in facts] == [0, 0]


def test_edited_profile_with_other_ages(db: ConnInfo, tmp_path: Path) -> None:
    path = tmp_path / "profile.toml"
    path.write_text(
        'name = "edited"\n'
        "[[retention]]\n"
        'name = "tokens_a_day_old"\n'
        'table = "RefreshToken"\n'
        'column = "expiresAt"\n'
        "older_than_days = 1\n"
        "[[retention]]\n"
        'name = "old_read_notes"\n'
        'table = "Notification"\n'
        'column = "createdAt"\n'
        "older_than_days = 90\n"
        'where = "{isRead}"\n'
        'cadence = "monthly"\n'
    )
    findings, _ = _retention(db, load_profile(path))
    got = {f.details["policy"]: f.details["count"] for f in findings}
    tokens = rows(db, _tokens_sql(Naming.PRISMA, 1))[0][0]
    notes = rows(db, _notifications_sql(Naming.PRISMA, 90))[0][0]
    assert got == {"tokens_a_day_old": tokens, "old_read_notes": notes}
    seven = rows(db, _tokens_sql(Naming.PRISMA, 7))[0][0]
    assert isinstance(tokens, int) and isinstance(seven, int) and tokens > seven


def test_missing_column_is_skipped(empty_db: ConnInfo) -> None:
    execute(
        empty_db,
        'CREATE TABLE refresh_tokens (id int PRIMARY KEY, "expiresAt" text);'
        "INSERT INTO refresh_tokens VALUES (1, 'yesterday');",
    )
    findings, _ = _retention(empty_db)
    assert [(f.severity, f.object, f.message) for f in findings] == [
        (
            Severity.INFO,
            "public.Notification",
            "skipped read_notifications: table 'Notification' not found in public",
        ),
        (
            Severity.INFO,
            "public.refresh_tokens",
            "skipped expired_refresh_tokens: column 'expiresAt' of public.refresh_tokens is "
            "text, not a timestamp",
        ),
    ]


def test_unrelated_database_gives_nothing(empty_db: ConnInfo) -> None:
    execute(empty_db, "CREATE TABLE invoice (id int PRIMARY KEY, created_at timestamptz)")
    assert _retention(empty_db) == ([], None)
