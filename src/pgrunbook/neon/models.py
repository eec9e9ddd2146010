"""What the Neon API v2 answers, as the few typed fields pgrunbook uses."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from pgrunbook.dsn import scrub

# Operation statuses (Neon API v2): scheduling -> running -> finished, or failed / error /
# cancelling -> cancelled; skipped counts as done.
DONE: Final = frozenset({"finished", "skipped"})
FAILED: Final = frozenset({"failed", "error", "cancelled"})


def _text(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    return "" if value is None else str(value)


@dataclass(frozen=True)
class Branch:
    id: str
    name: str
    parent_id: str
    created_at: str
    current_state: str
    default: bool

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Branch:
        return cls(
            id=_text(data, "id"),
            name=_text(data, "name"),
            parent_id=_text(data, "parent_id"),
            created_at=_text(data, "created_at"),
            current_state=_text(data, "current_state"),
            default=bool(data.get("default") or data.get("primary")),
        )

    def to_json(self, parent_name: str | None = None) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "parent_id": self.parent_id or None,
            "parent": parent_name,
            "created_at": self.created_at,
            "current_state": self.current_state,
            "default": self.default,
        }


@dataclass(frozen=True)
class Operation:
    id: str
    action: str
    status: str
    error: str

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Operation:
        return cls(
            id=_text(data, "id"),
            action=_text(data, "action"),
            status=_text(data, "status").lower(),
            error=_text(data, "error"),
        )

    @property
    def done(self) -> bool:
        return self.status in DONE

    @property
    def failed(self) -> bool:
        return self.status in FAILED


@dataclass(frozen=True, repr=False)
class CreatedBranch:
    """A new branch, ready, with its compute's connection URI (it holds a password)."""

    branch: Branch
    connection_uri: str | None

    @property
    def masked_uri(self) -> str | None:
        return scrub(self.connection_uri) if self.connection_uri else None

    def __repr__(self) -> str:
        return f"CreatedBranch(branch={self.branch!r}, connection_uri={self.masked_uri!r})"


def operations_in(body: Mapping[str, Any]) -> list[Operation]:
    raw = body.get("operations") or []
    return [Operation.from_api(op) for op in raw if isinstance(op, Mapping)]


def first_uri(body: Mapping[str, Any]) -> str | None:
    uris: Sequence[Any] = body.get("connection_uris") or []
    for entry in uris:
        if isinstance(entry, Mapping) and entry.get("connection_uri"):
            return str(entry["connection_uri"])
    return None
