"""Lock waits as a tree of blockers and the sessions they block.

Every session of this database that waits for a lock lists all its blockers
(``pg_blocking_pids``: the holders of conflicting locks and the sessions queued ahead of it
for a conflicting mode). The roots of the tree are blockers that are not waiting themselves:
ending one of them lets its subtree move on.

A session with several blockers is shown once, under the one closest to a root (the
lowest pid among equals), and its node names all its blockers in ``blocked_by``: for A
holding a row, B waiting for it and C queued behind both with ``LOCK TABLE``, C sits under
A next to B, with ``blocked_by`` [A, B]. So the tree has one node per session and stays
shallow, also for a queue of many ``LOCK TABLE`` sessions (each blocked by all those before
it) or many sessions updating one hot row: they all hang under the session they queue for.

A cycle (a deadlock the server has not detected yet: it looks after ``deadlock_timeout``)
has no root that is not waiting; its lowest pid becomes the root, and every session in the
cycle is marked ``in_cycle``. The construction never loops, and nothing here recurses.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import psycopg

from pgrunbook.rows import fetch

# pg_stat_activity is read once per transaction (this statement), so both references see
# the same sessions. Waiting sessions are found in pg_locks, which every role may read
# (pg_stat_activity hides other roles' wait events without pg_read_all_stats). A waiting
# session has one lock not granted; for a row lock that is the transaction it waits for,
# and the relation comes from the tuple lock it holds. Relations are named from pg_class
# (no lock taken, unlike opening the relation). Durations run to clock_timestamp(), read
# after the snapshots: never negative.
LOCKS_SQL: Final = """
WITH waiting AS (
    SELECT a.pid, pg_blocking_pids(a.pid) AS blocked_by
      FROM pg_stat_activity a
     WHERE a.pid IN (SELECT l.pid FROM pg_locks l WHERE NOT l.granted)
       AND a.datname = current_database()
       AND a.pid <> pg_backend_pid()
), involved AS (
    SELECT w.pid FROM waiting w
    UNION
    SELECT b.pid FROM waiting w CROSS JOIN LATERAL unnest(w.blocked_by) AS b(pid)
)
SELECT i.pid,
       coalesce(w.blocked_by, '{}') AS blocked_by,
       a.pid IS NOT NULL AS connected,
       a.datname AS database, a.usename AS user, a.application_name,
       host(a.client_addr) AS client_addr, a.backend_type, a.state,
       a.wait_event_type, a.wait_event,
       l.locktype AS lock_type, l.mode AS lock_mode, l.relation AS lock_relation,
       extract(epoch FROM clock_timestamp() - l.waitstart)::float8 AS waiting_seconds,
       extract(epoch FROM clock_timestamp() - a.xact_start)::float8 AS transaction_seconds,
       extract(epoch FROM clock_timestamp() - a.query_start)::float8 AS query_seconds,
       left(a.query, %(query_chars)s) AS query
  FROM involved i
  LEFT JOIN waiting w ON w.pid = i.pid
  LEFT JOIN pg_stat_activity a ON a.pid = i.pid AND i.pid <> 0
  LEFT JOIN LATERAL (
        SELECT wl.locktype, wl.mode, wl.waitstart,
               (SELECT n.nspname || '.' || c.relname
                  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE c.oid = coalesce(wl.relation, (
                         SELECT t.relation FROM pg_locks t
                          WHERE t.pid = wl.pid AND t.locktype = 'tuple' AND t.granted
                          LIMIT 1))) AS relation
          FROM pg_locks wl
         WHERE wl.pid = i.pid AND NOT wl.granted
         ORDER BY wl.waitstart NULLS LAST
         LIMIT 1
  ) l ON true
 ORDER BY i.pid
"""


@dataclass(frozen=True)
class LockSession:
    """One session in a lock wait, as a waiter, a blocker or both."""

    pid: int  # 0: a prepared transaction (pg_blocking_pids shows those as 0)
    blocked_by: list[int]  # every session it waits for; empty for a root
    connected: bool  # False: a prepared transaction, or the session ended meanwhile
    database: str | None = None
    user: str | None = None
    application_name: str | None = None
    client_addr: str | None = None
    backend_type: str | None = None
    state: str | None = None
    wait_event_type: str | None = None
    wait_event: str | None = None
    lock_type: str | None = None  # of the lock it waits for: relation, transactionid, tuple, ...
    lock_mode: str | None = None  # e.g. AccessExclusiveLock, ShareLock
    lock_relation: str | None = None  # schema.name of the relation (or of the row) it waits for
    waiting_seconds: float | None = None  # since it started waiting for the lock
    transaction_seconds: float | None = None
    query_seconds: float | None = None  # since its current (or last) statement started
    query: str | None = None  # truncated


@dataclass
class LockNode:
    session: LockSession
    blocked_by: list[int]  # all its blockers (the parent is one of them)
    in_cycle: bool = False
    blocking: list[LockNode] = field(default_factory=list)  # the sessions it holds up

    def walk(self) -> Iterator[LockNode]:
        """This node and every node below it, depth first."""
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.blocking))

    def descendants(self) -> int:
        return sum(1 for _ in self.walk()) - 1

    def _fields(self) -> dict[str, Any]:
        s = self.session
        return {
            "pid": s.pid,
            "connected": s.connected,
            "database": s.database,
            "user": s.user,
            "application_name": s.application_name,
            "client_addr": s.client_addr,
            "backend_type": s.backend_type,
            "state": s.state,
            "wait_event_type": s.wait_event_type,
            "wait_event": s.wait_event,
            "lock": None
            if s.lock_mode is None
            else {"type": s.lock_type, "mode": s.lock_mode, "relation": s.lock_relation},
            "waiting_seconds": s.waiting_seconds,
            "transaction_seconds": s.transaction_seconds,
            "query_seconds": s.query_seconds,
            "query": s.query,
            "blocked_by": self.blocked_by,
            "in_cycle": self.in_cycle,
            "blocking": [],
        }

    def to_json(self) -> dict[str, Any]:
        out = self._fields()
        stack = [(self, out)]
        while stack:
            node, document = stack.pop()
            for child in node.blocking:
                child_document = child._fields()
                document["blocking"].append(child_document)
                stack.append((child, child_document))
        return out


@dataclass
class LockTree:
    roots: list[LockNode]
    cycles: list[list[int]]  # each a sorted list of the pids that wait for each other

    @property
    def waiting(self) -> int:
        """Sessions that wait for a lock held or queued by another session."""
        return sum(1 for root in self.roots for node in root.walk() if node.blocked_by)

    def find(self, pid: int) -> LockNode | None:
        for root in self.roots:
            for node in root.walk():
                if node.session.pid == pid:
                    return node
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "waiting": self.waiting,
            "roots": [root.to_json() for root in self.roots],
            "cycles": self.cycles,
        }


def _absent(pid: int) -> LockSession:
    """A blocker pg_stat_activity does not show: a prepared transaction or a gone session."""
    return LockSession(pid, [], False)


def _strongly_connected(edges: dict[int, list[int]]) -> list[list[int]]:
    """Tarjan's strongly connected components, iterative (no recursion limit)."""
    index: dict[int, int] = {}
    low: dict[int, int] = {}
    on_stack: set[int] = set()
    stack: list[int] = []
    out: list[list[int]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work: list[tuple[int, int]] = [(start, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            recurse = False
            targets = edges.get(node, [])
            while i < len(targets):
                target = targets[i]
                i += 1
                if target not in index:
                    work.append((node, i))
                    work.append((target, 0))
                    recurse = True
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            if recurse:
                continue
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                out.append(sorted(component))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return out


def _closed(cycle: list[int], blockers: dict[int, list[int]]) -> bool:
    """No session outside the cycle blocks a session in it."""
    members = set(cycle)
    return all(b in members for p in cycle for b in blockers[p])


def build_tree(sessions: Sequence[LockSession]) -> LockTree:
    """Arrange the sessions as trees under the blockers that are not waiting themselves."""
    by_pid = {s.pid: s for s in sessions}
    for s in sessions:
        for blocker in s.blocked_by:
            by_pid.setdefault(blocker, _absent(blocker))
    blockers = {pid: sorted(set(s.blocked_by)) for pid, s in by_pid.items()}
    waiters: dict[int, list[int]] = {pid: [] for pid in by_pid}
    for pid, bs in blockers.items():
        for b in bs:
            waiters[b].append(pid)

    components = _strongly_connected(blockers)
    cycles = [c for c in components if len(c) > 1 or c[0] in blockers[c[0]]]
    in_cycle = {pid for c in cycles for pid in c}

    # Breadth first from the roots: a session hangs under the first of its blockers reached
    # (the closest to a root; the lowest pid among equals, as each level goes in pid order).
    nodes: dict[int, LockNode] = {}
    roots: list[LockNode] = []
    unreached = set(by_pid)

    def attach(pid: int, parent: int | None) -> None:
        node = LockNode(by_pid[pid], blockers[pid], pid in in_cycle)
        nodes[pid] = node
        unreached.discard(pid)
        if parent is None:
            roots.append(node)
        else:
            nodes[parent].blocking.append(node)

    level = sorted(pid for pid, bs in blockers.items() if not bs)
    for pid in level:
        attach(pid, None)
    while True:
        while level:
            below = []
            for pid in level:
                for waiter in sorted(waiters[pid]):
                    if waiter in unreached:
                        attach(waiter, pid)
                        below.append(waiter)
            level = sorted(below)
        if not unreached:
            break
        # Only cycles (and what waits behind them) are left: open the cycle nobody outside
        # it blocks at its lowest pid.
        sources = [c for c in cycles if c[0] in unreached and _closed(c, blockers)]
        start = min(sources)[0] if sources else min(unreached)
        attach(start, None)
        level = [start]

    roots.sort(key=lambda n: (-n.descendants(), n.session.pid))
    return LockTree(roots=roots, cycles=sorted(cycles))


def collect(conn: psycopg.Connection[Any], *, query_chars: int) -> LockTree:
    return build_tree(fetch(conn, LockSession, LOCKS_SQL, {"query_chars": query_chars}))
