"""The reference schema as data: tables, columns, indexes and relations, by logical name.

Logical names are Prisma's (``Message.roomId``); ``Naming`` maps them to physical names.
A relation with ``enforced=False`` exists only in the app (Prisma's ``relationMode =
"prisma"`` style): there is no foreign key, so orphan rows can exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from pgrunbook.reference.naming import Naming

ScalarType = Literal["uuid", "text", "int", "bool", "timestamp", "jsonb"]

SQL_TYPES: Final[dict[str, str]] = {
    "uuid": "UUID",
    "text": "TEXT",
    "int": "INTEGER",
    "bool": "BOOLEAN",
    "timestamp": "TIMESTAMP(3)",
    "jsonb": "JSONB",
}


@dataclass(frozen=True)
class Enum:
    name: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # a ScalarType or the name of an Enum
    nullable: bool = False
    default: str | None = None  # an SQL expression, independent of naming
    updated_at: bool = False  # Prisma's @updatedAt: set by the client, no database default


@dataclass(frozen=True)
class Index:
    columns: tuple[str, ...]
    unique: bool = False
    name: str | None = None  # logical suffix override, e.g. "roomId_legacy" (an anomaly)
    anomaly: str | None = None  # why this index is a deliberate defect, if it is one

    def physical_name(self, table: str, naming: Naming) -> str:
        suffix = "key" if self.unique else "idx"
        base = self.name or "_".join(naming.column(c) for c in self.columns)
        if self.name and naming is Naming.SNAKE:
            base = "_".join(naming.column(part) for part in self.name.split("_"))
        return f"{naming.table(table)}_{base}_{suffix}"


@dataclass(frozen=True)
class ForeignKey:
    column: str
    references: str  # the parent table; its key is "id"
    on_delete: Literal["RESTRICT", "CASCADE", "SET NULL"] = "RESTRICT"
    enforced: bool = True
    relation_name: str | None = None  # Prisma's relation name when a pair of tables has two
    field: str | None = None  # Prisma relation field on this model (default: column minus "Id")
    back_field: str | None = None  # the opposite field on the parent model

    def physical_name(self, table: str, naming: Naming) -> str:
        return f"{naming.table(table)}_{naming.column(self.column)}_fkey"


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    indexes: tuple[Index, ...] = ()
    foreign_keys: tuple[ForeignKey, ...] = ()
    primary_key: str = "id"
    doc: str = ""

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(f"{self.name}.{name}")

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


@dataclass(frozen=True)
class Schema:
    enums: tuple[Enum, ...]
    tables: tuple[Table, ...]

    def table(self, name: str) -> Table:
        for table in self.tables:
            if table.name == name:
                return table
        raise KeyError(name)

    def enum(self, name: str) -> Enum | None:
        for item in self.enums:
            if item.name == name:
                return item
        return None


def _id() -> Column:
    return Column("id", "uuid")


def _created() -> Column:
    return Column("createdAt", "timestamp", default="CURRENT_TIMESTAMP")


def _updated() -> Column:
    return Column("updatedAt", "timestamp", updated_at=True)


ALI_SCHEMA: Final = Schema(
    enums=(
        Enum("UserStatus", ("ACTIVE", "SUSPENDED", "DELETED")),
        Enum("RoomRole", ("OWNER", "ADMIN", "MEMBER")),
        Enum("MessageType", ("TEXT", "IMAGE", "GIFT", "SYSTEM")),
        Enum("TransactionType", ("DEPOSIT", "GIFT_SENT", "GIFT_RECEIVED", "REFUND", "BONUS")),
        Enum("NotificationType", ("FOLLOW", "GIFT", "MESSAGE", "ROOM_INVITE", "SYSTEM")),
        Enum("ReportStatus", ("PENDING", "REVIEWED", "RESOLVED", "DISMISSED")),
    ),
    tables=(
        Table(
            "User",
            (
                _id(),
                Column("email", "text"),
                Column("username", "text"),
                Column("displayName", "text"),
                Column("avatarUrl", "text", nullable=True),
                Column("bio", "text", nullable=True),
                Column("status", "UserStatus", default="'ACTIVE'"),
                Column("isVerified", "bool", default="false"),
                Column("lastLoginAt", "timestamp", nullable=True),
                _created(),
                _updated(),
            ),
            indexes=(Index(("email",), unique=True), Index(("username",), unique=True)),
        ),
        Table(
            "Room",
            (
                _id(),
                Column("name", "text"),
                Column("description", "text", nullable=True),
                Column("ownerId", "uuid"),
                Column("isPublic", "bool", default="true"),
                Column("isActive", "bool", default="true"),
                Column("maxMembers", "int", default="100"),
                Column("currentMembers", "int", default="0"),
                _created(),
                _updated(),
            ),
            indexes=(Index(("ownerId",)),),
            foreign_keys=(ForeignKey("ownerId", "User", back_field="roomsOwned"),),
        ),
        Table(
            "RoomMember",
            (
                _id(),
                Column("roomId", "uuid"),
                Column("userId", "uuid"),
                Column("role", "RoomRole", default="'MEMBER'"),
                Column("isActive", "bool", default="true"),
                Column("joinedAt", "timestamp", default="CURRENT_TIMESTAMP"),
                Column("leftAt", "timestamp", nullable=True),
                _updated(),
            ),
            indexes=(Index(("roomId", "userId"), unique=True), Index(("userId",))),
            foreign_keys=(
                ForeignKey("roomId", "Room", on_delete="CASCADE"),
                ForeignKey("userId", "User", on_delete="CASCADE"),
            ),
        ),
        Table(
            "Message",
            (
                _id(),
                Column("roomId", "uuid"),
                Column("senderId", "uuid"),
                Column("content", "text"),
                Column("type", "MessageType", default="'TEXT'"),
                Column("isDeleted", "bool", default="false"),
                _created(),
                _updated(),
            ),
            indexes=(
                Index(("roomId",)),
                Index(
                    ("roomId",),
                    name="roomId_legacy",
                    anomaly="duplicate of the roomId index, left from an old migration",
                ),
                Index(
                    ("updatedAt",),
                    anomaly="unused: no query filters or sorts messages by updatedAt",
                ),
            ),
            foreign_keys=(
                ForeignKey("roomId", "Room", enforced=False),
                ForeignKey("senderId", "User", back_field="messagesSent"),
            ),
        ),
        Table(
            "Gift",
            (
                _id(),
                Column("name", "text"),
                Column("price", "int"),
                Column("imageUrl", "text", nullable=True),
                Column("isActive", "bool", default="true"),
                _created(),
                _updated(),
            ),
            indexes=(Index(("name",), unique=True),),
        ),
        Table(
            "GiftSend",
            (
                _id(),
                Column("giftId", "uuid"),
                Column("senderId", "uuid"),
                Column("receiverId", "uuid"),
                Column("roomId", "uuid", nullable=True),
                Column("quantity", "int", default="1"),
                Column("totalPrice", "int"),
                _created(),
            ),
            foreign_keys=(
                ForeignKey("giftId", "Gift"),
                ForeignKey("senderId", "User", relation_name="GiftsSent", back_field="giftsSent"),
                ForeignKey(
                    "receiverId", "User", relation_name="GiftsReceived", back_field="giftsReceived"
                ),
                ForeignKey("roomId", "Room", enforced=False),
            ),
        ),
        Table(
            "Wallet",
            (
                _id(),
                Column("userId", "uuid"),
                Column("balance", "int", default="0"),
                Column("diamonds", "int", default="0"),
                _created(),
                _updated(),
            ),
            indexes=(Index(("userId",), unique=True),),
            foreign_keys=(ForeignKey("userId", "User", on_delete="CASCADE"),),
        ),
        Table(
            "WalletTransaction",
            (
                _id(),
                Column("walletId", "uuid"),
                Column("type", "TransactionType"),
                Column("amount", "int"),
                Column("referenceId", "uuid", nullable=True),
                Column("description", "text", nullable=True),
                _created(),
            ),
            foreign_keys=(ForeignKey("walletId", "Wallet", back_field="transactions"),),
        ),
        Table(
            "Follow",
            (
                _id(),
                Column("followerId", "uuid"),
                Column("followingId", "uuid"),
                _created(),
            ),
            indexes=(Index(("followerId", "followingId"), unique=True),),
            foreign_keys=(
                ForeignKey(
                    "followerId",
                    "User",
                    on_delete="CASCADE",
                    relation_name="UserFollowing",
                    back_field="following",
                ),
                ForeignKey(
                    "followingId",
                    "User",
                    on_delete="CASCADE",
                    relation_name="UserFollowers",
                    back_field="followers",
                ),
            ),
        ),
        Table(
            "Notification",
            (
                _id(),
                Column("userId", "uuid"),
                Column("type", "NotificationType"),
                Column("title", "text"),
                Column("body", "text", nullable=True),
                Column("data", "jsonb", nullable=True),
                Column("isRead", "bool", default="false"),
                Column("readAt", "timestamp", nullable=True),
                _created(),
            ),
            foreign_keys=(ForeignKey("userId", "User", enforced=False),),
        ),
        Table(
            "Report",
            (
                _id(),
                Column("reporterId", "uuid"),
                Column("reportedUserId", "uuid", nullable=True),
                Column("messageId", "uuid", nullable=True),
                Column("reason", "text"),
                Column("status", "ReportStatus", default="'PENDING'"),
                Column("reviewedAt", "timestamp", nullable=True),
                _created(),
                _updated(),
            ),
            foreign_keys=(
                ForeignKey(
                    "reporterId", "User", relation_name="ReportsFiled", back_field="reportsFiled"
                ),
                ForeignKey(
                    "reportedUserId",
                    "User",
                    on_delete="SET NULL",
                    relation_name="ReportsAgainst",
                    back_field="reportsAgainst",
                ),
            ),
        ),
        Table(
            "RefreshToken",
            (
                _id(),
                Column("userId", "uuid"),
                Column("token", "text"),
                Column("expiresAt", "timestamp"),
                Column("revokedAt", "timestamp", nullable=True),
                _created(),
            ),
            indexes=(Index(("token",), unique=True), Index(("userId",))),
            foreign_keys=(ForeignKey("userId", "User", on_delete="CASCADE"),),
        ),
    ),
)
