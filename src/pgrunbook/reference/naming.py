"""Physical names for logical (Prisma) names: Prisma's own, or snake_case."""

from __future__ import annotations

import enum
import re
from typing import Final

_CAMEL_BOUNDARY: Final = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")

# snake_case apps name tables in the plural (and "user" is a reserved word).
_SNAKE_TABLES: Final = {
    "User": "users",
    "Room": "rooms",
    "RoomMember": "room_members",
    "Message": "messages",
    "Gift": "gifts",
    "GiftSend": "gift_sends",
    "Wallet": "wallets",
    "WalletTransaction": "wallet_transactions",
    "Follow": "follows",
    "Notification": "notifications",
    "Report": "reports",
    "RefreshToken": "refresh_tokens",
}


def snake(name: str) -> str:
    return _CAMEL_BOUNDARY.sub("_", name).lower()


class Naming(enum.StrEnum):
    """How logical names become table, column and type names in the database."""

    PRISMA = "prisma"
    SNAKE = "snake"

    def table(self, name: str) -> str:
        if self is Naming.PRISMA:
            return name
        return _SNAKE_TABLES.get(name) or snake(name)

    def column(self, name: str) -> str:
        return name if self is Naming.PRISMA else snake(name)

    def enum_type(self, name: str) -> str:
        return name if self is Naming.PRISMA else snake(name)
