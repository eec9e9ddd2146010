"""Deterministic synthetic data for the reference schema, as COPY text rows.

Every table gets its own ``random.Random`` seeded from (seed, table), so the data depends only
on the seed, the scale and the anchor time. Popularity is Zipf-like: a few hot rooms, power
users, whales who send most gifts and celebrities with most followers. Anomalies are injected
in exact counts and tallied in ``Tally`` as they are written.

Timestamps avoid a margin around the retention thresholds (7 days for refresh tokens, 30 for
read notifications) so the counts of rows past them stay exact for two days after seeding.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from pgrunbook.seed.scales import Scale

NULL: Final = "\\N"
DAY_MS: Final = 86_400_000
Row = tuple[str, ...]

_FIRST: Final = [
    "ali",
    "amir",
    "sara",
    "lina",
    "omar",
    "maya",
    "noah",
    "leah",
    "adam",
    "nora",
    "yusuf",
    "hana",
    "zaid",
    "dina",
    "karim",
    "rania",
    "tariq",
    "salma",
    "ivan",
    "olga",
    "mei",
    "jun",
    "aiko",
    "kenji",
    "lucas",
    "emma",
    "liam",
    "mia",
    "arjun",
    "priya",
    "diego",
    "sofia",
]
_LAST: Final = [
    "haddad",
    "khan",
    "rahman",
    "silva",
    "tanaka",
    "kim",
    "nguyen",
    "garcia",
    "rossi",
    "novak",
    "smith",
    "jones",
    "müller",
    "costa",
    "santos",
    "ahmed",
    "ali",
    "hassan",
    "park",
    "chen",
    "wang",
    "patel",
    "singh",
    "ivanova",
    "lopez",
]
_DOMAINS: Final = ("gmail.com", "yahoo.com", "outlook.com", "ali.app", "proton.me", "icloud.com")
_WORDS: Final = [
    "hello",
    "everyone",
    "welcome",
    "back",
    "tonight",
    "live",
    "music",
    "gift",
    "thanks",
    "love",
    "this",
    "song",
    "room",
    "vibe",
    "who",
    "is",
    "here",
    "join",
    "us",
    "party",
    "good",
    "morning",
    "evening",
    "night",
    "happy",
    "birthday",
    "congrats",
    "wow",
    "amazing",
    "cool",
    "play",
    "again",
    "lol",
    "yes",
    "no",
    "maybe",
    "later",
    "see",
    "you",
    "soon",
    "friends",
    "family",
    "game",
]
_GIFTS: Final = (
    ("Rose", 1), ("Heart", 5), ("Coffee", 10), ("Balloon", 20), ("Star", 50), ("Crown", 100),
    ("Rocket", 500), ("Castle", 1000), ("Yacht", 5000), ("Planet", 10000), ("Lollipop", 2),
    ("Kiss", 3), ("Clap", 4), ("Fire", 8), ("Diamond", 200), ("Unicorn", 300), ("Dragon", 2000),
    ("Fireworks", 150), ("Teddy", 25), ("Cake", 30), ("Ring", 800), ("Car", 1500),
    ("Jet", 3000), ("Island", 8000), ("Rainbow", 40), ("Sun", 60), ("Moon", 70), ("Comet", 90),
    ("Guitar", 120), ("Mic", 15), ("Trophy", 250), ("Medal", 35), ("Candy", 6), ("Tea", 7),
    ("Pizza", 12), ("Panda", 45), ("Lion", 400), ("Phoenix", 600), ("Galaxy", 20000),
    ("Tiara", 700),
)  # fmt: skip


def zipf_weights(n: int, exponent: float) -> list[float]:
    """Cumulative weights for ``random.choices``: item i has weight 1 / (i + 1) ** exponent."""
    return list(itertools.accumulate(1.0 / (i + 1) ** exponent for i in range(n)))


class Clock:
    """Formats epoch milliseconds as ``timestamp(3)`` text (UTC), caching the date part."""

    def __init__(self, anchor: datetime) -> None:
        self.anchor_ms = int(anchor.timestamp() * 1000)
        self._days: dict[int, str] = {}

    def text(self, ms: int) -> str:
        day, rest = divmod(ms, DAY_MS)
        prefix = self._days.get(day)
        if prefix is None:
            prefix = datetime.fromtimestamp(day * 86_400, UTC).strftime("%Y-%m-%d ")
            self._days[day] = prefix
        seconds, milli = divmod(rest, 1000)
        minutes, sec = divmod(seconds, 60)
        hour, minute = divmod(minutes, 60)
        return f"{prefix}{hour:02d}:{minute:02d}:{sec:02d}.{milli:03d}"

    def days_ago(self, days: float) -> int:
        return self.anchor_ms - int(days * DAY_MS)


_VERSION_4: Final = bytes((x & 0x0F) | 0x40 for x in range(256))
_VARIANT_RFC: Final = bytes((x & 0x3F) | 0x80 for x in range(256))


def uuid_batch(rng: random.Random, n: int) -> list[str]:
    """``n`` random version-4 UUIDs as the 32 hex digits PostgreSQL accepts (fast in bulk)."""
    raw = bytearray(rng.randbytes(16 * n))
    raw[6::16] = raw[6::16].translate(_VERSION_4)
    raw[8::16] = raw[8::16].translate(_VARIANT_RFC)
    text = raw.hex()
    return [text[i : i + 32] for i in range(0, 32 * n, 32)]


def uuid_text(rng: random.Random) -> str:
    return uuid_batch(rng, 1)[0]


def _bool(flag: bool) -> str:
    return "t" if flag else "f"


@dataclass
class Tally:
    """Exact counts of what was injected, filled in while rows are generated."""

    anomalies: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str, count: int = 1) -> None:
        self.anomalies[kind] = self.anomalies.get(kind, 0) + count


@dataclass
class World:
    """Keys and facts later tables need from earlier ones."""

    users: list[str] = field(default_factory=list)
    rooms: list[str] = field(default_factory=list)
    gifts: list[tuple[str, int]] = field(default_factory=list)
    wallets: list[str] = field(default_factory=list)  # wallet id per user index
    spent: list[int] = field(default_factory=list)  # coins spent per user index
    received: list[int] = field(default_factory=list)
    message_ids: list[str] = field(default_factory=list)  # a sample, for reports
    anomaly_wallets: set[str] = field(default_factory=set)


class Generator:
    """Yields rows table by table; tables must be generated in ``TABLE_ORDER``."""

    def __init__(self, scale: Scale, seed: int, anchor: datetime) -> None:
        self.scale = scale
        self.seed = seed
        self.anchor = anchor
        self.clock = Clock(anchor)
        self.tally = Tally()
        self.world = World()
        self.k = scale.anomaly_unit

    def rng(self, table: str) -> random.Random:
        return random.Random(f"pgrunbook:{self.seed}:{table}")

    # -- helpers ---------------------------------------------------------------------------
    def _recent_ms(self, rng: random.Random, days: float, power: float = 2.0) -> int:
        """A time in the last ``days`` days, denser towards the anchor."""
        return self.clock.anchor_ms - int(days * DAY_MS * rng.random() ** power) - 1000

    def _picks(self, rng: random.Random, n_items: int, k: int, exponent: float) -> list[int]:
        """Zipf-distributed indexes, shuffled so that popularity is not ordered by id."""
        order = list(range(n_items))
        rng.shuffle(order)
        weights = zipf_weights(n_items, exponent)
        picks = rng.choices(range(n_items), cum_weights=weights, k=k)
        return [order[i] for i in picks]

    # -- tables ----------------------------------------------------------------------------
    def users(self) -> Iterator[Row]:
        rng = self.rng("User")
        n, k, clock = self.scale.users, self.k, self.clock
        bad_email = set(rng.sample(range(n), 5 * k))
        bad_username = set(rng.sample(sorted(set(range(n)) - bad_email), 4 * k))
        for i in range(n):
            uid = uuid_text(rng)
            self.world.users.append(uid)
            first, last = rng.choice(_FIRST), rng.choice(_LAST).replace("ü", "u")
            username = f"{first}_{last}{i}"
            email = f"{first}.{last}{i}@{rng.choice(_DOMAINS)}"
            if i in bad_email:
                email = rng.choice(
                    (f"{first}.{last}{i}.gmail.com", f"{first}{i}@", f"{first} {i}@mail.com",
                     f"{first}{i}@localhost", f"@{last}{i}.com")
                )  # fmt: skip
                self.tally.add("invalid_emails")
            if i in bad_username:
                username = rng.choice(
                    (f"{first}-{last}{i}", f"{first} {last}{i}", f"{first}.{i}!",
                     f"{first}{last}{i}_{'x' * 30}")
                )  # fmt: skip
                self.tally.add("invalid_usernames")
            created = self._recent_ms(rng, 720, 1.0)
            status = "ACTIVE" if rng.random() < 0.95 else rng.choice(("SUSPENDED", "DELETED"))
            last_login = created + int((clock.anchor_ms - created) * rng.random())
            yield (
                uid, email, username, f"{first.title()} {last.title()}",
                f"https://cdn.ali.app/a/{i}.jpg" if rng.random() < 0.7 else NULL,
                NULL if rng.random() < 0.6 else " ".join(rng.choices(_WORDS, k=6)),
                status, _bool(rng.random() < 0.05), clock.text(last_login),
                clock.text(created), clock.text(last_login),
            )  # fmt: skip

    def rooms(self) -> Iterator[Row]:
        """Rooms, with member counters that match the RoomMember rows (planned here first)."""
        rng = self.rng("Room")
        users, clock, n = self.world.users, self.clock, self.scale.rooms
        room_ids = [uuid_text(rng) for _ in range(n)]
        self.world.rooms.extend(room_ids)
        owners = self._picks(rng, len(users), n, 1.1)
        planned = [0] * n
        for r in self._picks(rng, n, n * 15, 0.9):
            planned[r] += 1
        members, active = self._plan_members(room_ids, owners, planned)
        self.member_rows = members
        over = set(rng.sample([r for r in range(n) if active[r] >= 8], 2 * self.k))
        for r, rid in enumerate(room_ids):
            current = active[r]
            maximum = max(100, -(-int(current * 1.5) // 100) * 100)
            if r in over:
                maximum = current - rng.randint(1, 5)
                self.tally.add("rooms_over_capacity")
            created = self._recent_ms(rng, 365, 1.0)
            yield (
                rid, f"{rng.choice(_WORDS).title()} {rng.choice(_WORDS)} {r}",
                NULL if rng.random() < 0.5 else " ".join(rng.choices(_WORDS, k=8)),
                users[owners[r]], _bool(rng.random() < 0.8), _bool(rng.random() < 0.9),
                str(maximum), str(current), clock.text(created), clock.text(created),
            )  # fmt: skip

    def _plan_members(
        self, room_ids: list[str], owners: list[int], planned: list[int]
    ) -> tuple[list[Row], list[int]]:
        """RoomMember rows (the owner first) and the active member count of each room."""
        rng = self.rng("RoomMember")
        users, clock = self.world.users, self.clock
        rows: list[Row] = []
        active_count = [0] * len(room_ids)
        for r, rid in enumerate(room_ids):
            picked = [owners[r], *self._picks_cached("members", rng, len(users), planned[r], 0.8)]
            seen: set[int] = set()
            for u in picked:
                if u in seen:
                    continue
                owner = not seen
                seen.add(u)
                active = owner or rng.random() < 0.85
                active_count[r] += active
                joined = self._recent_ms(rng, 300, 1.0)
                left = NULL if active else clock.text(joined + int(rng.random() * 30 * DAY_MS))
                role = "OWNER" if owner else ("ADMIN" if rng.random() < 0.03 else "MEMBER")
                rows.append(
                    (uuid_text(rng), rid, users[u], role, _bool(active), clock.text(joined),
                     left, clock.text(joined))
                )  # fmt: skip
        return rows, active_count

    def room_members(self) -> Iterator[Row]:
        yield from self.member_rows
        self.member_rows = []

    def messages(self) -> Iterator[Row]:
        rng = self.rng("Message")
        users, rooms, text = self.world.users, self.world.rooms, self.clock.text
        n = self.scale.messages
        phantom_rooms = [uuid_text(rng) for _ in range(3)]
        orphans = set(rng.sample(range(n), 7 * self.k))
        sentences = [" ".join(rng.choices(_WORDS, k=rng.randint(2, 12))) for _ in range(4000)]
        newest, span, rand = self.clock.anchor_ms - 1000, 90 * DAY_MS, rng.random
        chunk = 50_000
        for start in range(0, n, chunk):
            size = min(chunk, n - start)
            ids = uuid_batch(rng, size)
            if len(self.world.message_ids) < 2000:
                self.world.message_ids.extend(ids[:: max(1, size // 500)])
            room_picks = self._picks_cached("msg_rooms", rng, len(rooms), size, 1.1)
            sender_picks = self._picks_cached("msg_users", rng, len(users), size, 1.0)
            texts = rng.choices(sentences, k=size)
            kinds = rng.choices(("TEXT", "IMAGE", "GIFT"), cum_weights=(90, 96, 100), k=size)
            for j in range(size):
                if start + j in orphans:
                    room = phantom_rooms[j % 3]
                    self.tally.add("orphan_messages")
                else:
                    room = rooms[room_picks[j]]
                created = text(newest - int(span * rand() ** 2))
                deleted = "t" if rand() < 0.03 else "f"
                yield (
                    ids[j], room, users[sender_picks[j]], texts[j], kinds[j], deleted, created,
                    created,
                )  # fmt: skip

    def _picks_cached(
        self, key: str, rng: random.Random, n_items: int, k: int, exponent: float
    ) -> list[int]:
        """Like _picks, but reuses one popularity order and weight table per key."""
        cache = self.__dict__.setdefault("_pick_cache", {})
        if key not in cache:
            order = list(range(n_items))
            rng.shuffle(order)
            cache[key] = (order, zipf_weights(n_items, exponent))
        order, weights = cache[key]
        return [order[i] for i in rng.choices(range(n_items), cum_weights=weights, k=k)]

    def gifts(self) -> Iterator[Row]:
        rng = self.rng("Gift")
        created = self.clock.text(self.clock.days_ago(400))
        for name, price in _GIFTS:
            gid = uuid_text(rng)
            self.world.gifts.append((gid, price))
            yield (
                gid, name, str(price), f"https://cdn.ali.app/g/{name.lower()}.png", "t",
                created, created,
            )  # fmt: skip

    def gift_sends(self) -> Iterator[Row]:
        rng = self.rng("GiftSend")
        users, rooms, gifts, clock = (
            self.world.users,
            self.world.rooms,
            self.world.gifts,
            self.clock,
        )
        n = self.scale.gift_sends
        self.world.spent = [0] * len(users)
        self.world.received = [0] * len(users)
        self.gift_ledger: list[tuple[str, int, int, int, int]] = []
        senders = self._picks(rng, len(users), n, 1.3)
        receivers = self._picks(rng, len(users), n, 1.2)
        room_picks = self._picks(rng, len(rooms), n, 1.1)
        gift_weights = list(itertools.accumulate(1.0 / (1 + price) ** 0.5 for _, price in gifts))
        gift_picks = rng.choices(range(len(gifts)), cum_weights=gift_weights, k=n)
        self_gifts = set(rng.sample(range(n), 4 * self.k))
        orphans = set(rng.sample(sorted(set(range(n)) - self_gifts), 5 * self.k))
        phantom_room = uuid_text(rng)
        for i in range(n):
            s, r = senders[i], receivers[i]
            if i in self_gifts:
                r = s
                self.tally.add("self_gifts")
            elif r == s:
                r = (s + 1) % len(users)
            if i in orphans:
                room = phantom_room
                self.tally.add("orphan_gift_sends")
            else:
                room = NULL if rng.random() < 0.1 else rooms[room_picks[i]]
            gid, price = gifts[gift_picks[i]]
            quantity = 1 if rng.random() < 0.7 else rng.randint(2, 10)
            total = price * quantity
            created = self._recent_ms(rng, 90, 1.5)
            sid = uuid_text(rng)
            self.world.spent[s] += total
            self.world.received[r] += total
            self.gift_ledger.append((sid, s, r, total, created))
            yield (
                sid, gid, users[s], users[r], room, str(quantity), str(total),
                clock.text(created),
            )  # fmt: skip

    def wallets(self) -> Iterator[Row]:
        rng = self.rng("Wallet")
        users, clock, k = self.world.users, self.clock, self.k
        negative_balance = set(rng.sample(range(len(users)), 4 * k))
        negative_diamonds = set(
            rng.sample(sorted(set(range(len(users))) - negative_balance), 3 * k)
        )
        self.deposits: list[int] = []
        for u, uid in enumerate(users):
            wid = uuid_text(rng)
            self.world.wallets.append(wid)
            extra = rng.randint(0, 5000)
            self.deposits.append(self.world.spent[u] + extra)
            balance, diamonds = extra, self.world.received[u]
            if u in negative_balance:
                balance = -rng.randint(1, 500)
                self.world.anomaly_wallets.add(wid)
                self.tally.add("negative_wallet_balances")
            if u in negative_diamonds:
                diamonds = -rng.randint(1, 500)
                self.world.anomaly_wallets.add(wid)
                self.tally.add("negative_wallet_diamonds")
            created = self._recent_ms(rng, 700, 1.0)
            yield (wid, uid, str(balance), str(diamonds), clock.text(created), clock.text(created))

    def wallet_transactions(self) -> Iterator[Row]:
        rng = self.rng("WalletTransaction")
        wallets, clock = self.world.wallets, self.clock
        for u, amount in enumerate(self.deposits):
            parts = rng.randint(1, 3)
            for p in range(parts):
                share = amount // parts + (amount % parts if p == 0 else 0)
                if share <= 0:
                    continue
                yield (
                    uuid_text(rng), wallets[u], "DEPOSIT", str(share), NULL, "Top-up",
                    clock.text(self._recent_ms(rng, 120, 1.0)),
                )  # fmt: skip
        for sid, s, r, total, created in self.gift_ledger:
            when = clock.text(created)
            yield (uuid_text(rng), wallets[s], "GIFT_SENT", str(-total), sid, NULL, when)
            yield (uuid_text(rng), wallets[r], "GIFT_RECEIVED", str(total), sid, NULL, when)
        for _ in range(5 * self.k):
            self.tally.add("zero_amount_wallet_transactions")
            yield (
                uuid_text(rng), wallets[rng.randrange(len(wallets))],
                rng.choice(("BONUS", "REFUND")), "0", NULL, "Adjustment",
                clock.text(self._recent_ms(rng, 60, 1.0)),
            )  # fmt: skip

    def follows(self) -> Iterator[Row]:
        rng = self.rng("Follow")
        users, text = self.world.users, self.clock.text
        n = self.scale.follows
        followers = [rng.randrange(len(users)) for _ in range(n)]
        following = self._picks(rng, len(users), n, 1.05)
        ids = uuid_batch(rng, n)
        newest, span, rand = self.clock.anchor_ms - 1000, 500 * DAY_MS, rng.random
        seen: set[tuple[int, int]] = set()
        for i, (a, b) in enumerate(zip(followers, following, strict=True)):
            if a == b or (a, b) in seen:
                continue
            seen.add((a, b))
            yield (ids[i], users[a], users[b], text(newest - int(span * rand())))
        for u in rng.sample(range(len(users)), 3 * self.k):
            self.tally.add("self_follows")
            yield (uuid_text(rng), users[u], users[u], text(self._recent_ms(rng, 200, 1.0)))

    def notifications(self) -> Iterator[Row]:
        rng = self.rng("Notification")
        users, clock = self.world.users, self.clock
        n = self.scale.notifications
        targets = self._picks(rng, len(users), n, 1.0)
        orphans = set(rng.sample(range(n), 6 * self.k))
        phantom_users = [uuid_text(rng) for _ in range(4)]
        kinds = ("FOLLOW", "GIFT", "MESSAGE", "ROOM_INVITE", "SYSTEM")
        titles = {
            "FOLLOW": "New follower", "GIFT": "You received a gift", "MESSAGE": "New message",
            "ROOM_INVITE": "Room invitation", "SYSTEM": "Announcement",
        }  # fmt: skip
        threshold = 30
        for i in range(n):
            if i in orphans:
                user = phantom_users[i % 4]
                self.tally.add("orphan_notifications")
            else:
                user = users[targets[i]]
            # Keep clear of the 30-day retention line: nothing between 28 and 32 days old.
            age = 120 * rng.random() ** 1.5
            if threshold - 2 <= age <= threshold + 2:
                age += 4.5
            created = clock.days_ago(age) - 1000
            read = rng.random() < 0.6
            if read and age > threshold:
                self.tally.add("read_notifications_over_30_days")
            kind = rng.choice(kinds)
            yield (
                uuid_text(rng), user, kind, titles[kind],
                " ".join(rng.choices(_WORDS, k=5)),
                '{"v": 1}' if rng.random() < 0.3 else NULL,
                _bool(read), clock.text(created + 60_000) if read else NULL,
                clock.text(created),
            )  # fmt: skip

    def reports(self) -> Iterator[Row]:
        rng = self.rng("Report")
        users, clock = self.world.users, self.clock
        statuses = ("PENDING", "REVIEWED", "RESOLVED", "DISMISSED")
        for _ in range(self.scale.reports):
            status = rng.choices(statuses, weights=(35, 20, 30, 15))[0]
            if status == "PENDING":
                self.tally.add("pending_reports")
            created = self._recent_ms(rng, 60, 1.0)
            reviewed = NULL if status == "PENDING" else clock.text(created + DAY_MS)
            message = rng.choice(self.world.message_ids) if rng.random() < 0.5 else NULL
            yield (
                uuid_text(rng), users[rng.randrange(len(users))],
                users[rng.randrange(len(users))] if rng.random() < 0.8 else NULL, message,
                rng.choice(("spam", "abuse", "scam", "nudity", "other")), status, reviewed,
                clock.text(created), clock.text(created),
            )  # fmt: skip

    def refresh_tokens(self) -> Iterator[Row]:
        rng = self.rng("RefreshToken")
        users, clock = self.world.users, self.clock
        lifetime, threshold = 30, 7
        for _ in range(self.scale.refresh_tokens):
            # expiresAt = createdAt + 30 days; keep clear of the 7-day line (5 to 9 days ago).
            expires_ago = rng.uniform(-lifetime, 110)
            if threshold - 2 <= expires_ago <= threshold + 2:
                expires_ago += 4.5
            expires = clock.days_ago(expires_ago)
            created = expires - lifetime * DAY_MS
            revoked = rng.random() < 0.15
            if expires_ago > threshold:
                self.tally.add("refresh_tokens_expired_over_7_days")
            elif expires_ago > 0:
                self.tally.add("refresh_tokens_expired_within_7_days")
            elif not revoked:
                self.tally.add("refresh_tokens_active")
            if revoked:
                self.tally.add("refresh_tokens_revoked")
            revoked_at = created + int((min(expires, clock.anchor_ms) - created) * rng.random())
            yield (
                uuid_text(rng), users[rng.randrange(len(users))], f"{rng.getrandbits(256):064x}",
                clock.text(expires), clock.text(revoked_at) if revoked else NULL,
                clock.text(created),
            )  # fmt: skip

    def wallets_to_churn(self) -> list[str]:
        """15% of the healthy wallets: updated after loading to leave dead tuples."""
        rng = self.rng("Churn")
        healthy = [w for w in self.world.wallets if w not in self.world.anomaly_wallets]
        return rng.sample(healthy, len(self.world.wallets) * 15 // 100)


# Tables in load order, with the generator method and the logical columns it yields.
TABLE_ORDER: Final[Sequence[tuple[str, str]]] = (
    ("User", "users"),
    ("Room", "rooms"),
    ("RoomMember", "room_members"),
    ("Message", "messages"),
    ("Gift", "gifts"),
    ("GiftSend", "gift_sends"),
    ("Wallet", "wallets"),
    ("WalletTransaction", "wallet_transactions"),
    ("Follow", "follows"),
    ("Notification", "notifications"),
    ("Report", "reports"),
    ("RefreshToken", "refresh_tokens"),
)


def anchor_now() -> datetime:
    """The default anchor: now, to the second."""
    return datetime.now(UTC).replace(microsecond=0)
