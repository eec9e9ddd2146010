"""How big each ``--scale`` is. Other tables follow the message count."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, get_args

ScaleName = Literal["tiny", "small", "medium", "large"]
SCALE_NAMES: Final[tuple[str, ...]] = get_args(ScaleName)


@dataclass(frozen=True)
class Scale:
    name: str
    messages: int

    @property
    def users(self) -> int:
        return max(200, self.messages // 20)

    @property
    def rooms(self) -> int:
        return max(30, self.messages // 200)

    @property
    def gift_sends(self) -> int:
        return self.messages // 10

    @property
    def follows(self) -> int:
        return self.users * 10

    @property
    def notifications(self) -> int:
        return self.messages // 4

    @property
    def reports(self) -> int:
        return max(20, self.users // 50)

    @property
    def refresh_tokens(self) -> int:
        return self.users * 2

    @property
    def anomaly_unit(self) -> int:
        """Anomaly counts are multiples of this: 1 at tiny scale, 20 at small."""
        return max(1, self.messages // 10_000)


SCALES: Final = {
    "tiny": Scale("tiny", 10_000),
    "small": Scale("small", 200_000),
    "medium": Scale("medium", 2_000_000),
    "large": Scale("large", 10_000_000),
}
