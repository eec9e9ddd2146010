"""The defects the seed injects, each with the SQL that counts it in a database.

The seed tallies what it writes; ``count_anomalies`` counts the same things with SQL, so a
test (or ``pgrunbook seed --json``) can show both agree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import psycopg
from psycopg import sql

from pgrunbook.reference.naming import Naming
from pgrunbook.reference.rules import (
    EMAIL_PATTERN,
    READ_NOTIFICATION_RETENTION_DAYS,
    REFRESH_TOKEN_RETENTION_DAYS,
    USERNAME_PATTERN,
)


@dataclass(frozen=True)
class AnomalyCheck:
    kind: str
    table: str
    description: str
    predicate: Callable[[Callable[[str], sql.Identifier]], sql.Composable]
    orphan_of: tuple[str, str] | None = None  # (column, parent table) for orphan counts


def _lit(value: object) -> sql.Literal:
    return sql.Literal(value)


CHECKS: Final[tuple[AnomalyCheck, ...]] = (
    AnomalyCheck(
        "orphan_messages", "Message", "messages whose room does not exist",
        lambda c: sql.SQL("TRUE"), orphan_of=("roomId", "Room"),
    ),
    AnomalyCheck(
        "orphan_gift_sends", "GiftSend", "gift sends whose room does not exist",
        lambda c: sql.SQL("TRUE"), orphan_of=("roomId", "Room"),
    ),
    AnomalyCheck(
        "orphan_notifications", "Notification", "notifications whose user does not exist",
        lambda c: sql.SQL("TRUE"), orphan_of=("userId", "User"),
    ),
    AnomalyCheck(
        "negative_wallet_balances", "Wallet", "wallets with balance < 0",
        lambda c: sql.SQL("{} < 0").format(c("balance")),
    ),
    AnomalyCheck(
        "negative_wallet_diamonds", "Wallet", "wallets with diamonds < 0",
        lambda c: sql.SQL("{} < 0").format(c("diamonds")),
    ),
    AnomalyCheck(
        "zero_amount_wallet_transactions", "WalletTransaction", "transactions with amount = 0",
        lambda c: sql.SQL("{} = 0").format(c("amount")),
    ),
    AnomalyCheck(
        "self_follows", "Follow", "users following themselves",
        lambda c: sql.SQL("{} = {}").format(c("followerId"), c("followingId")),
    ),
    AnomalyCheck(
        "self_gifts", "GiftSend", "gifts sent to oneself",
        lambda c: sql.SQL("{} = {}").format(c("senderId"), c("receiverId")),
    ),
    AnomalyCheck(
        "invalid_emails", "User", "emails that do not match the email format",
        lambda c: sql.SQL("{} !~ {}").format(c("email"), _lit(EMAIL_PATTERN)),
    ),
    AnomalyCheck(
        "invalid_usernames", "User", "usernames that do not match ^[A-Za-z0-9_]{3,30}$",
        lambda c: sql.SQL("{} !~ {}").format(c("username"), _lit(USERNAME_PATTERN)),
    ),
    AnomalyCheck(
        "rooms_over_capacity", "Room", "rooms with currentMembers > maxMembers",
        lambda c: sql.SQL("{} > {}").format(c("currentMembers"), c("maxMembers")),
    ),
    AnomalyCheck(
        "refresh_tokens_expired_over_7_days", "RefreshToken",
        "refresh tokens expired more than 7 days ago (the daily cleanup deletes them)",
        lambda c: sql.SQL("{} < (now() AT TIME ZONE 'UTC') - make_interval(days => {})").format(
            c("expiresAt"), _lit(REFRESH_TOKEN_RETENTION_DAYS)
        ),
    ),
    AnomalyCheck(
        "refresh_tokens_revoked", "RefreshToken", "revoked refresh tokens",
        lambda c: sql.SQL("{} IS NOT NULL").format(c("revokedAt")),
    ),
    AnomalyCheck(
        "read_notifications_over_30_days", "Notification",
        "read notifications older than 30 days (the weekly cleanup deletes them)",
        lambda c: sql.SQL(
            "{} AND {} < (now() AT TIME ZONE 'UTC') - make_interval(days => {})"
        ).format(c("isRead"), c("createdAt"), _lit(READ_NOTIFICATION_RETENTION_DAYS)),
    ),
    AnomalyCheck(
        "pending_reports", "Report", "reports waiting for review",
        lambda c: sql.SQL("{} = 'PENDING'").format(c("status")),
    ),
)  # fmt: skip


def count_query(check: AnomalyCheck, naming: Naming) -> sql.Composed:
    table = sql.Identifier(naming.table(check.table))

    def col(name: str) -> sql.Identifier:
        return sql.Identifier(naming.column(name))

    if check.orphan_of is not None:
        column, parent = check.orphan_of
        return sql.SQL(
            "SELECT count(*) FROM {t} AS child WHERE child.{c} IS NOT NULL AND NOT EXISTS "
            "(SELECT 1 FROM {p} AS parent WHERE parent.{id} = child.{c})"
        ).format(t=table, c=col(column), p=sql.Identifier(naming.table(parent)), id=col("id"))
    return sql.SQL("SELECT count(*) FROM {} WHERE {}").format(table, check.predicate(col))


def count_anomalies(conn: psycopg.Connection[tuple[object, ...]], naming: Naming) -> dict[str, int]:
    """Count every kind of injected defect with SQL (prisma or snake naming)."""
    out: dict[str, int] = {}
    for check in CHECKS:
        row = conn.execute(count_query(check, naming)).fetchone()
        out[check.kind] = int(str(row[0])) if row else 0
    return out
