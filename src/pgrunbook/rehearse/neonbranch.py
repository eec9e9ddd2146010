"""The copy as a Neon branch: ``rehearse-YYYYMMDD-HHMMSS`` with a read-write compute.

Created from ``parent`` (default: the project's default branch), used through the
connection URI the API returns, and deleted when the block ends, also when the rehearsal
fails or is interrupted, unless it is to be kept.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from pgrunbook.dsn import ConnInfo, parse_dsn
from pgrunbook.neon import Branch, NeonApi, NeonBranches, NeonError, NeonSettings

URI_SOURCE: Final = "the Neon branch's connection URI"


@dataclass(frozen=True)
class BranchCopy:
    branch: Branch
    info: ConnInfo  # the branch's compute (holds its password: never shown)
    seconds: float

    @property
    def name(self) -> str:
        return self.branch.name

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "neon branch",
            "name": self.branch.name,
            "id": self.branch.id,
            "endpoint": self.info.display(),
            "seconds": round(self.seconds, 3),
        }


def branch_name(now: datetime | None = None) -> str:
    """``rehearse-YYYYMMDD-HHMMSS`` in UTC."""
    return (now or datetime.now(UTC)).strftime("rehearse-%Y%m%d-%H%M%S")


def _delete_by_name(neon: NeonBranches, name: str) -> None:
    """Delete branch ``name`` if it exists (a create that failed half way)."""
    for branch in neon.list():
        if branch.name == name and not branch.default:
            neon.delete(branch)


@contextmanager
def neon_branch_copy(
    project: str | None,
    *,
    parent: str | None = None,
    keep: bool = False,
    now: datetime | None = None,
    note: Callable[[str], None] = lambda text: None,
) -> Iterator[BranchCopy]:
    """A new branch for the block, deleted at its end unless ``keep``."""
    settings = NeonSettings.from_env(project)
    name = branch_name(now)
    with NeonApi(settings, on_retry=note) as api:
        neon = NeonBranches(api)
        parent_branch = neon.find(parent) if parent else None
        started = time.monotonic()
        try:
            created = neon.create(name, parent_branch)
        except BaseException:
            try:
                _delete_by_name(neon, name)
            except NeonError as exc:
                note(f"could not delete the half-made branch {name}: {exc.one_line()}")
            raise
        try:
            if not created.connection_uri:
                raise NeonError(
                    f"the Neon API gave no connection URI for the new branch {name}",
                    "check the project's roles and databases in the Neon console",
                )
            info = parse_dsn(created.connection_uri, URI_SOURCE)
            yield BranchCopy(created.branch, info, time.monotonic() - started)
        finally:
            if not keep:
                neon.delete(created.branch)
