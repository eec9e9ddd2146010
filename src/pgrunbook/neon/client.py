"""Branches of one Neon project: list, find by name, create, delete, restore.

Every call that changes something returns operations; each call here waits for them to
finish (polling with backoff, up to ``PollPolicy.total`` seconds) and raises one clear
error when one fails.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from pgrunbook.neon.api import NeonApi
from pgrunbook.neon.errors import NeonError, OperationFailedError
from pgrunbook.neon.models import Branch, CreatedBranch, Operation, first_uri, operations_in


@dataclass(frozen=True)
class PollPolicy:
    """How operations are polled: ``interval`` growing by ``factor`` up to ``max_interval``."""

    interval: float = 0.1
    factor: float = 1.5
    max_interval: float = 3.0
    total: float = 600.0


def backup_branch_name(now: datetime | None = None) -> str:
    """``backup-YYYYMMDD-HHMM`` in UTC: the runbook's section 2 name for a backup branch."""
    return (now or datetime.now(UTC)).strftime("backup-%Y%m%d-%H%M")


class NeonBranches:
    """The branch calls of the Neon API v2 for ``api.settings.project_id``."""

    def __init__(
        self,
        api: NeonApi,
        poll: PollPolicy | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = api
        self.poll = poll or PollPolicy()
        self._sleep, self._clock = sleep, clock
        self.polls = 0  # operation status requests made, for reporting

    @property
    def _project(self) -> str:
        return f"/projects/{quote(self.api.settings.project_id, safe='')}"

    def list(self) -> list[Branch]:
        body = self.api.request("GET", f"{self._project}/branches")
        return [Branch.from_api(b) for b in body.get("branches") or [] if isinstance(b, dict)]

    def find(self, name: str, branches: Iterable[Branch] | None = None) -> Branch:
        """The branch called ``name`` (a branch id is accepted too)."""
        known = list(self.list() if branches is None else branches)
        for branch in known:
            if branch.name == name:
                return branch
        for branch in known:
            if branch.id == name:
                return branch
        names = ", ".join(sorted(b.name for b in known)[:10]) or "none"
        raise NeonError(
            f"no branch named {name!r} in Neon project {self.api.settings.project_id}",
            f"its branches: {names}",
        )

    def create(self, name: str, parent: Branch | None = None) -> CreatedBranch:
        """A branch of ``parent`` (default: the project's default branch) with a read-write
        compute, once its operations have finished."""
        branch: dict[str, Any] = {"name": name}
        if parent is not None:
            branch["parent_id"] = parent.id
        body = self.api.request(
            "POST",
            f"{self._project}/branches",
            json={"branch": branch, "endpoints": [{"type": "read_write"}]},
        )
        created = Branch.from_api(body.get("branch") or {})
        self.wait(operations_in(body))
        return CreatedBranch(self.get(created.id), first_uri(body))

    def get(self, branch_id: str) -> Branch:
        body = self.api.request("GET", f"{self._project}/branches/{quote(branch_id, safe='')}")
        return Branch.from_api(body.get("branch") or {})

    def delete(self, branch: Branch) -> None:
        if branch.default:
            raise NeonError(
                f"refusing to delete {branch.name!r}: it is the project's default branch",
                "make another branch the default in the Neon console first",
            )
        body = self.api.request("DELETE", f"{self._project}/branches/{quote(branch.id, safe='')}")
        self.wait(operations_in(body))

    def restore(self, target: Branch, source: Branch, preserve_under: str | None = None) -> Branch:
        """Reset ``target`` to the head of ``source``; with ``preserve_under`` the old state
        stays as a branch of that name."""
        if target.id == source.id:
            raise NeonError("a branch cannot be restored from itself", "name another --from")
        payload: dict[str, Any] = {"source_branch_id": source.id}
        if preserve_under:
            payload["preserve_under_name"] = preserve_under
        body = self.api.request(
            "POST", f"{self._project}/branches/{quote(target.id, safe='')}/restore", json=payload
        )
        self.wait(operations_in(body))
        return self.get(target.id)

    def wait(self, operations: Iterable[Operation]) -> None:
        """Poll each unfinished operation until it is done; a failed one raises."""
        deadline = self._clock() + self.poll.total
        for operation in operations:
            interval = self.poll.interval
            current = operation
            while not current.done:
                if current.failed:
                    detail = f": {current.error}" if current.error else ""
                    raise OperationFailedError(
                        f"Neon operation {current.action} ({current.id}) {current.status}{detail}",
                        "see the project's Operations page in the Neon console",
                    )
                if self._clock() + interval > deadline:
                    raise NeonError(
                        f"Neon operation {current.action} ({current.id}) still "
                        f"{current.status} after {self.poll.total:g} s",
                        "it may still finish; check the Neon console before retrying",
                    )
                self._sleep(interval)
                interval = min(interval * self.poll.factor, self.poll.max_interval)
                body = self.api.request(
                    "GET", f"{self._project}/operations/{quote(current.id, safe='')}"
                )
                self.polls += 1
                current = Operation.from_api(body.get("operation") or {})
