"""A local Neon API v2 server: the subset pgrunbook uses, in memory, on loopback.

Branches live in a dict; every change returns operations that stay ``running`` until they
have been polled ``op_polls`` times. ``hiccup()`` queues 423 / 429 / other answers (with
``Retry-After``) served before the real one. A wrong API key gets 401. Errors have the
API's ``{"code": ..., "message": ...}`` body. New branches' connection URIs are
``connection_uri``: a local database the test gives.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PREFIX = "/api/v2"


@dataclass
class Hiccup:
    status: int
    method: str | None
    path_suffix: str | None
    retry_after: str | None
    body: dict[str, str]


@dataclass
class Seen:
    method: str
    path: str
    status: int
    at: float
    authorization_ok: bool


@dataclass
class FakeNeon:
    project_id: str = "calm-river-123456"
    api_key: str = "neon-test-key-0123456789abcdef"
    connection_uri: str = "postgresql://app:secret@127.0.0.1:5432/app"
    op_polls: int = 3
    fail_operations: str | None = None  # an error text: operations end "failed" with it
    branches: dict[str, dict[str, Any]] = field(default_factory=dict)
    operations: dict[str, dict[str, Any]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    restores: list[dict[str, Any]] = field(default_factory=list)
    base_url: str = ""
    _hiccups: list[Hiccup] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.add_branch("main", default=True)

    # ---- test helpers -------------------------------------------------------------------
    def add_branch(
        self, name: str, parent_id: str | None = None, *, default: bool = False
    ) -> dict[str, Any]:
        branch = {
            "id": f"br-{uuid.uuid4().hex[:12]}",
            "project_id": self.project_id,
            "parent_id": parent_id,
            "name": name,
            "current_state": "ready",
            "default": default,
            "protected": False,
            "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "updated_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        self.branches[str(branch["id"])] = branch
        return branch

    def by_name(self, name: str) -> dict[str, Any]:
        return next(b for b in self.branches.values() if b["name"] == name)

    def hiccup(
        self,
        status: int,
        *,
        method: str | None = None,
        path_suffix: str | None = None,
        retry_after: str | None = None,
        times: int = 1,
        message: str = "",
    ) -> None:
        text = message or {423: "project already has running operations", 429: "rate limit"}.get(
            status, "error"
        )
        for _ in range(times):
            self._hiccups.append(
                Hiccup(status, method, path_suffix, retry_after, {"code": "", "message": text})
            )

    def requests(self, method: str | None = None, suffix: str = "") -> list[Seen]:
        return [
            s
            for s in self.seen
            if (method is None or s.method == method) and s.path.endswith(suffix)
        ]

    # ---- the API --------------------------------------------------------------------------
    def _operation(self, action: str, branch_id: str, effect: str = "") -> dict[str, Any]:
        op = {
            "id": str(uuid.uuid4()),
            "project_id": self.project_id,
            "branch_id": branch_id,
            "action": action,
            "status": "running",
            "failures_count": 0,
            "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "polls_left": self.op_polls,
            "effect": effect,
        }
        self.operations[str(op["id"])] = op
        return op

    @staticmethod
    def _public(op: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in op.items() if k not in ("polls_left", "effect")}

    def _poll(self, op: dict[str, Any]) -> None:
        if op["status"] != "running":
            return
        op["polls_left"] -= 1
        if op["polls_left"] > 0:
            return
        if self.fail_operations:
            op["status"], op["error"] = "failed", self.fail_operations
            return
        op["status"] = "finished"
        branch = self.branches.get(op["branch_id"])
        if branch is not None and op["effect"] == "ready":
            branch["current_state"] = "ready"

    def handle(
        self, method: str, path: str, body: dict[str, Any], authorization: str
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        with self._lock:
            for i, h in enumerate(self._hiccups):
                if (h.method in (None, method)) and (
                    h.path_suffix is None or path.endswith(h.path_suffix)
                ):
                    del self._hiccups[i]
                    headers = {"Retry-After": h.retry_after} if h.retry_after is not None else {}
                    return h.status, h.body, headers
            if authorization != f"Bearer {self.api_key}":
                return 401, {"code": "", "message": "authentication required"}, {}
            return self._route(method, path, body)

    def _route(
        self, method: str, path: str, body: dict[str, Any]
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        match = re.fullmatch(rf"{PREFIX}/projects/([^/]+)(/.*)", path)
        if not match:
            return 404, {"code": "", "message": "not found"}, {}
        if match[1] != self.project_id:
            return 404, {"code": "", "message": "project not found"}, {}
        rest = match[2]
        if rest == "/branches" and method == "GET":
            return 200, {"branches": list(self.branches.values())}, {}
        if rest == "/branches" and method == "POST":
            return self._create(body)
        if op_match := re.fullmatch(r"/operations/([^/]+)", rest):
            op = self.operations.get(op_match[1])
            if op is None or method != "GET":
                return 404, {"code": "", "message": "operation not found"}, {}
            self._poll(op)
            return 200, {"operation": self._public(op)}, {}
        br_match = re.fullmatch(r"/branches/([^/]+)(/restore)?", rest)
        if not br_match:
            return 404, {"code": "", "message": "not found"}, {}
        branch = self.branches.get(br_match[1])
        if branch is None:
            return 404, {"code": "", "message": "branch not found"}, {}
        if br_match[2] and method == "POST":
            return self._restore(branch, body)
        if method == "GET":
            return 200, {"branch": branch}, {}
        if method == "DELETE":
            if branch["default"]:
                return 400, {"code": "", "message": "cannot delete the default branch"}, {}
            del self.branches[branch["id"]]
            ops = [
                self._operation("suspend_compute", branch["id"]),
                self._operation("delete_timeline", branch["id"]),
            ]
            return 200, {"branch": branch, "operations": [self._public(o) for o in ops]}, {}
        return 405, {"code": "", "message": "method not allowed"}, {}

    def _create(self, body: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        wanted = body.get("branch") or {}
        name = wanted.get("name") or f"br-auto-{uuid.uuid4().hex[:6]}"
        if any(b["name"] == name for b in self.branches.values()):
            return 409, {"code": "", "message": f"branch {name} already exists"}, {}
        parent_id = wanted.get("parent_id") or next(
            b["id"] for b in self.branches.values() if b["default"]
        )
        if parent_id not in self.branches:
            return 404, {"code": "", "message": "parent branch not found"}, {}
        branch = self.add_branch(name, parent_id)
        branch["current_state"] = "init"
        endpoints = [
            {"id": f"ep-{uuid.uuid4().hex[:12]}", "type": e.get("type"), "branch_id": branch["id"]}
            for e in body.get("endpoints") or []
        ]
        ops = [self._operation("create_branch", branch["id"], "ready")]
        if endpoints:
            ops.append(self._operation("start_compute", branch["id"]))
        uris = [{"connection_uri": self.connection_uri}] if endpoints else []
        return (
            201,
            {
                "branch": branch,
                "endpoints": endpoints,
                "operations": [self._public(o) for o in ops],
                "connection_uris": uris,
            },
            {},
        )

    def _restore(
        self, target: dict[str, Any], body: dict[str, Any]
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        source = self.branches.get(str(body.get("source_branch_id")))
        if source is None:
            return 400, {"code": "", "message": "source branch not found"}, {}
        preserve = body.get("preserve_under_name")
        if preserve:
            self.add_branch(str(preserve), target["id"])
        self.restores.append(
            {"target": target["id"], "source": source["id"], "preserve_under_name": preserve}
        )
        target["updated_at"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        ops = [
            self._operation("restore_branch", target["id"]),
            self._operation("apply_config", target["id"]),
        ]
        return 200, {"branch": target, "operations": [self._public(o) for o in ops]}, {}


def _handler(fake: FakeNeon) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else {}
            authorization = self.headers.get("Authorization", "")
            status, answer, headers = fake.handle(self.command, self.path, body, authorization)
            fake.seen.append(
                Seen(
                    self.command,
                    self.path,
                    status,
                    time.monotonic(),
                    authorization == f"Bearer {fake.api_key}",
                )
            )
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = do_PATCH = _serve

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

    return Handler


@contextmanager
def serve(fake: FakeNeon) -> Iterator[FakeNeon]:
    """Run ``fake`` on 127.0.0.1 (a free port) in a thread; ``fake.base_url`` says where."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    fake.base_url = f"http://127.0.0.1:{server.server_address[1]}{PREFIX}"
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
