"""Discovery on the seeded reference database: every injected defect, with the seed's counts,
and nothing at warning level or above that the seed did not inject (both namings)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from pgrunbook.discover import DiscoveryReport, discover
from pgrunbook.findings import Finding, Severity
from pgrunbook.reference import Naming
from pgrunbook.seed import SeedReport, seed
from tests.support import TEST_ANCHOR, TEST_SEED, PgServer

# seed anomaly kind -> the runbook constraint (profile) that the violating rows break
CONSTRAINT_OF = {
    "negative_wallet_balances": "chk_wallet_balance_non_negative",
    "negative_wallet_diamonds": "chk_wallet_diamonds_non_negative",
    "zero_amount_wallet_transactions": "chk_wallet_tx_amount_nonzero",
    "self_follows": "chk_follow_not_self",
    "self_gifts": "chk_giftsend_not_self",
    "invalid_emails": "chk_user_email_format",
    "invalid_usernames": "chk_user_username_format",
    "rooms_over_capacity": "chk_room_currentmembers_valid",
}
# seed anomaly kind -> (child table, relation column) of the orphan rows
ORPHANS_OF = {
    "orphan_messages": ("Message", "roomId"),
    "orphan_gift_sends": ("GiftSend", "roomId"),
    "orphan_notifications": ("Notification", "userId"),
}
RETENTION_OF = {
    "refresh_tokens_expired_over_7_days": "expired_refresh_tokens",
    "read_notifications_over_30_days": "read_notifications",
}


@pytest.fixture(scope="module")
def seeded(pg_server: PgServer) -> Iterator[dict[Naming, tuple[DiscoveryReport, SeedReport]]]:
    """A freshly seeded database per naming (its statistics are real, unlike a clone's)."""
    out, names = {}, []
    for naming in Naming:
        name = f"t_ref_{naming.value}_{uuid.uuid4().hex[:8]}"
        names.append(name)
        info = pg_server.create_database(name)
        report = seed(info, scale="tiny", naming=naming, seed=TEST_SEED, anchor=TEST_ANCHOR)
        out[naming] = (discover(info), report)
    yield out
    for name in names:
        pg_server.drop_database(name)


def assert_reference_findings(report: DiscoveryReport, seeded: SeedReport, naming: Naming) -> None:
    """The findings a tiny-scale seed must produce, exactly; shared with the PG 15 test."""
    table = naming.table
    col = naming.column
    anomalies: dict[str, Any] = seeded.anomalies
    failed = [(c.id, c.reason) for c in report.checks if c.status != "ran"]
    assert failed == [], failed

    def of(check: str, *, at_least: Severity = Severity.INFO) -> list[Finding]:
        return [f for f in report.by_check(check) if f.severity.at_least(at_least)]

    expected_warnings: set[tuple[str, str]] = set()

    # orphan rows of the three logical relations, with the seed's counts
    orphans = {f.object: f for f in of("orphans")}
    for kind, (child, column) in ORPHANS_OF.items():
        finding = orphans[f"public.{table(child)}"]
        assert finding.details["count"] == anomalies[kind], kind
        assert finding.details["relation"]["columns"] == [col(column)]
        expected_warnings.add(("orphans", finding.object))
    assert len(orphans) == len(ORPHANS_OF)

    # rows breaking the runbook's planned constraints, with the seed's counts
    violations = {f.details["constraint"]: f for f in of("constraint_violations")}
    assert {k: v.details["count"] for k, v in violations.items()} == {
        name: anomalies[kind] for kind, name in CONSTRAINT_OF.items()
    }
    expected_warnings |= {("constraint_violations", f.object) for f in violations.values()}

    # the cleanup backlog (info), with the seed's counts
    retention = {f.details["policy"]: f.details["count"] for f in of("retention")}
    assert retention == {policy: anomalies[kind] for kind, policy in RETENTION_OF.items()}

    # the duplicate index: the legacy twin is the one to drop
    [duplicate] = of("duplicate_indexes")
    [legacy] = anomalies["duplicate_indexes"]
    assert duplicate.object == f"public.{legacy}"
    assert duplicate.fix == f'DROP INDEX CONCURRENTLY IF EXISTS "public"."{legacy}";'
    expected_warnings.add(("duplicate_indexes", duplicate.object))

    # the unused index: reported, but statistics minutes old are not evidence enough
    [unused] = anomalies["unused_indexes"]
    verdicts = {f.object: f.details["verdict"] for f in of("unused_indexes")}
    assert verdicts[f"public.{unused}"] == "insufficient_evidence"
    assert not of("unused_indexes", at_least=Severity.WARNING)

    # relations no index leads with: the seed's list (plus Report.messageId, inferred)
    missing = {
        f"{f.object.removeprefix('public.')}.{f.details['columns'][0]}"
        + ("" if f.details["source"] == "foreign_key" else " (logical, no foreign key)")
        for f in of("missing_indexes")
    }
    extra = f"{table('Report')}.{col('messageId')} (logical, no foreign key)"
    assert missing == {*anomalies["foreign_keys_without_index"], extra}
    expected_warnings |= {
        ("missing_indexes", f.object) for f in of("missing_indexes", at_least=Severity.WARNING)
    }

    # updatedAt columns that no trigger maintains
    stale = {f.object.removeprefix("public.") for f in of("updated_at_triggers")}
    assert stale == set(anomalies["updated_at_without_trigger"])
    expected_warnings |= {("updated_at_triggers", f"public.{t}") for t in stale}

    # the churned table's dead tuples
    [dead] = of("dead_tuples")
    assert dead.object == f"public.{anomalies['dead_tuples']['table']}"
    assert dead.details["dead_ratio"] > 0.10
    expected_warnings.add(("dead_tuples", dead.object))

    # and nothing else at warning level or above
    warnings = {
        (f.check, f.object) for f in report.findings if f.severity.at_least(Severity.WARNING)
    }
    assert warnings == expected_warnings

    # the naming convention is recognised
    [naming_finding] = of("naming")
    style = "camel" if naming is Naming.PRISMA else "snake"
    assert naming_finding.details["tables"]["style"] == style
    assert naming_finding.details["columns"]["style"] == style


@pytest.mark.parametrize("naming", list(Naming))
def test_discover_finds_every_injected_defect(
    seeded: dict[Naming, tuple[DiscoveryReport, SeedReport]], naming: Naming
) -> None:
    report, seed_report = seeded[naming]
    assert_reference_findings(report, seed_report, naming)
