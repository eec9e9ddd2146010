"""``pgrunbook monitor``: the runbook's script 09, a live snapshot (read-only)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime

import click
from rich import box
from rich.console import Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from pgrunbook.cli.common import (
    dsn_option,
    emit_json,
    json_option,
    out_console,
    schema_option,
    target_from,
)
from pgrunbook.errors import ConfigError
from pgrunbook.monitor import LockNode, Monitor, Snapshot, Thresholds, open_monitor
from pgrunbook.report import units

QUERY_WIDTH = 60  # characters of query text in a lock tree node


@click.command(short_help="Live snapshot: connections, locks, long queries (script 09).")
@dsn_option
@schema_option("Schema of the cache, dead tuple and index sections. Default: the URL's, or public.")
@click.option(
    "--long-query",
    "long_query",
    type=click.FloatRange(min=0),
    default=Thresholds.long_query_seconds,
    show_default=True,
    metavar="SECONDS",
    help="An active statement running this long is listed as long-running.",
)
@click.option(
    "--top",
    type=click.IntRange(min=1),
    default=Thresholds.top,
    show_default=True,
    metavar="N",
    help="Rows per list (applications, queries, tables, indexes, statements).",
)
@click.option(
    "--watch",
    type=click.FloatRange(min=0.5),
    default=None,
    metavar="SECONDS",
    help="Refresh in place every SECONDS until Ctrl-C.",
)
@json_option
def monitor(
    dsn: str | None,
    schema: str | None,
    long_query: float,
    top: int,
    watch: float | None,
    as_json: bool,
) -> None:
    """Show a live snapshot of the database, read-only (the runbook's script 09).

    Connections by state and by application against max_connections, long-running queries,
    sessions idle in a transaction, lock waits as a tree of blockers and blocked sessions,
    cache hit ratios, the tables with the most dead tuples, index usage, replication lag,
    and pg_stat_statements outliers. --watch refreshes it in place until Ctrl-C.
    """
    if watch is not None and as_json:
        raise ConfigError(
            "--watch cannot be combined with --json",
            "--json prints one snapshot; run it repeatedly for a series",
        )
    target = target_from(dsn)
    thresholds = Thresholds(long_query_seconds=long_query, top=top)
    with open_monitor(target.reader(), schema=schema, thresholds=thresholds) as session:
        if watch is None:
            snap = session.snapshot()
            if as_json:
                emit_json(snap.to_json())
            else:
                out_console.print(render(snap))
            return
        try:
            _watch(session, watch)
        except KeyboardInterrupt:
            return


def _watch(session: Monitor, seconds: float) -> None:
    """Refresh in place on a terminal; elsewhere (a pipe, a file) print one after another."""
    if not out_console.is_terminal:
        while True:
            out_console.print(render(session.snapshot(), watch=seconds))
            out_console.print()
            out_console.file.flush()
            time.sleep(seconds)
    with Live(
        render(session.snapshot(), watch=seconds), console=out_console, auto_refresh=False
    ) as live:
        while True:
            time.sleep(seconds)
            live.update(render(session.snapshot(), watch=seconds), refresh=True)


def render(snap: Snapshot, *, watch: float | None = None) -> RenderableType:
    """The human snapshot: a header line, then one compact block per section."""
    server = snap.server
    role = snap.replication.role
    header = Text.assemble(
        ("pgrunbook monitor", "bold"),
        f": database {server.database.name}, schema {snap.schema}, "
        f"PostgreSQL {server.version} ({role}), {snap.taken_at:%Y-%m-%d %H:%M:%S %Z}",
    )
    if watch is not None:
        header.append(f"  every {watch:g} s, Ctrl-C to stop", style="dim")
    parts: list[RenderableType] = [
        header,
        _connections(snap),
        _locks(snap),
        _long_running(snap),
        _idle(snap),
        _cache(snap),
        _dead_tuples(snap),
        *_index_usage(snap),
        _replication(snap),
        *_statements(snap),
    ]
    return Group(*parts)


def _table() -> Table:
    return Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)


def _section(title: str, table: Table, note: str | None = None) -> RenderableType:
    parts: list[RenderableType] = [Text(title, style="bold"), table]
    if note:
        parts.append(Text(note, style="dim"))
    return Group(*parts)


def _text_column(table: Table, name: str) -> None:
    """A column that gives way when the table is too wide (its cells are cut with …)."""
    table.add_column(name, overflow="ellipsis")


def _number_column(table: Table, name: str) -> None:
    table.add_column(name, justify="right", no_wrap=True)


def _cell(text: str | None) -> Text:
    return Text(text or "-", no_wrap=True, overflow="ellipsis")


def _none(title: str, text: str = "none") -> Text:
    return Text.assemble((title, "bold"), (f": {text}", "dim"))


def _one_line(query: str | None, width: int | None = None) -> str:
    text = " ".join((query or "").split())
    if width is not None and len(text) > width:
        return text[: width - 1] + "…"
    return text


def _app(name: str | None) -> str:
    return name or "-"


def _connections(snap: Snapshot) -> RenderableType:
    c = snap.connections
    title = (
        f"Connections: {c.server_total} of {c.max_connections} on the server "
        f"({units.percent(c.usage_ratio)}; {c.reserved} reserved, {c.available} free), "
        f"{c.database_total} in this database"
    )
    states = ", ".join(f"{s.state} {s.count}" for s in c.by_state) or "no other sessions"
    if not c.by_application:
        return Group(Text(title, style="bold"), Text(f"by state: {states}", style="dim"))
    table = _table()
    _text_column(table, "application")
    for name in ("sessions", "active", "idle", "idle in tx"):
        _number_column(table, name)
    for app in c.by_application:
        table.add_row(
            _cell(app.application_name),
            str(app.count),
            str(app.active),
            str(app.idle),
            str(app.idle_in_transaction),
        )
    return _section(title, table, f"by state: {states}")


def _node_label(node: LockNode, parent: int | None) -> Text:
    s = node.session
    text = Text()
    if not s.connected:
        what = "a prepared transaction" if s.pid == 0 else "a session that has ended"
        text.append(f"pid {s.pid}", style="bold").append(f" {what}")
        return text
    text.append(f"pid {s.pid}", style="bold red" if not node.blocked_by else "bold")
    text.append(f" {_app(s.application_name)} ({s.user or '?'})")
    text.append(f" {s.state or s.backend_type or '?'}", style="cyan")
    if s.transaction_seconds is not None:
        text.append(f", transaction {units.duration(s.transaction_seconds)}")
    if s.lock_mode is not None:
        target = f" ({s.lock_relation})" if s.lock_relation else ""
        text.append(f"\n  waits {units.duration(s.waiting_seconds)} for ", style="yellow")
        text.append(f"{s.lock_mode} on {s.lock_type}{target}", style="yellow")
    others = [pid for pid in node.blocked_by if pid != parent]
    if others:
        text.append(f"\n  also blocked by {', '.join(map(str, others))}", style="yellow")
    if node.in_cycle:
        text.append("\n  in a deadlock cycle", style="bold red")
    if s.query:
        text.append(f"\n  {_one_line(s.query, QUERY_WIDTH)}", style="dim")
    return text


def _locks(snap: Snapshot) -> RenderableType:
    tree = snap.locks
    if not tree.roots:
        return _none("Lock waits")
    roots = len(tree.roots)
    title = (
        f"Lock waits: {tree.waiting} waiting behind {roots} root blocker{'s' if roots > 1 else ''}"
    )
    if tree.cycles:
        title += f", {len(tree.cycles)} deadlock cycle{'s' if len(tree.cycles) > 1 else ''}"
    top = Tree(Text(title, style="bold"), guide_style="dim")
    stack: list[tuple[Tree, LockNode, int | None]] = [(top, root, None) for root in tree.roots]
    stack.reverse()
    while stack:  # depth first, in order, without recursion
        branch, node, parent = stack.pop()
        added = branch.add(_node_label(node, parent))
        stack.extend((added, child, node.session.pid) for child in reversed(node.blocking))
    return top


def _long_running(snap: Snapshot) -> RenderableType:
    title = f"Long-running queries (over {units.duration(snap.thresholds.long_query_seconds)})"
    if not snap.long_running:
        return _none(title)
    table = _table()
    for name in ("pid", "running"):
        _number_column(table, name)
    _text_column(table, "application")
    _text_column(table, "waits for")
    _text_column(table, "query")
    for q in snap.long_running:
        table.add_row(
            str(q.pid),
            units.duration(q.duration_seconds),
            _cell(q.application_name),
            _cell(q.wait_event),
            _cell(_one_line(q.query)),
        )
    return _section(title, table)


def _idle(snap: Snapshot) -> RenderableType:
    title = "Idle in transaction"
    if not snap.idle_in_transaction:
        return _none(title)
    table = _table()
    for name in ("pid", "idle", "transaction"):
        _number_column(table, name)
    _text_column(table, "application")
    _text_column(table, "last query")
    for s in snap.idle_in_transaction:
        aborted = " (aborted)" if s.state.endswith("(aborted)") else ""
        table.add_row(
            str(s.pid),
            units.duration(s.idle_seconds),
            units.duration(s.transaction_seconds) + aborted,
            _cell(s.application_name),
            _cell(_one_line(s.last_query)),
        )
    return _section(title, table)


def _cache(snap: Snapshot) -> RenderableType:
    parts = []
    for label, ratio in (
        ("database", snap.cache.database),
        (f"{snap.schema} tables", snap.cache.tables),
        (f"{snap.schema} indexes", snap.cache.indexes),
    ):
        parts.append(
            f"{label} {units.percent(ratio.ratio)} "
            f"({units.count(ratio.hit)} hits, {units.count(ratio.read)} reads)"
        )
    return Text.assemble(("Cache hit ratio: ", "bold"), "; ".join(parts))


def _ago(snap: Snapshot, when: datetime | None) -> str:
    if when is None:
        return "never"
    return f"{units.duration(snap.taken_at - when)} ago"


def _dead_tuples(snap: Snapshot) -> RenderableType:
    title = "Dead tuples"
    if not snap.dead_tuples:
        return _none(title)
    table = _table()
    _text_column(table, "table")
    for name in ("dead", "live", "dead %", "last autovacuum"):
        _number_column(table, name)
    for t in snap.dead_tuples:
        table.add_row(
            _cell(t.table),
            units.count(t.dead_tuples),
            units.count(t.live_tuples),
            units.percent(t.dead_ratio),
            _ago(snap, t.last_autovacuum),
        )
    return _section(title, table)


def _index_usage(snap: Snapshot) -> Sequence[RenderableType]:
    usage = snap.index_usage
    out: list[RenderableType] = []
    if usage.tables:
        table = _table()
        _text_column(table, "table")
        for name in ("seq scans", "rows seq read", "index scans", "index %", "size"):
            _number_column(table, name)
        for t in usage.tables:
            table.add_row(
                _cell(t.table),
                units.count(t.seq_scan),
                units.count(t.seq_tup_read),
                units.count(t.idx_scan),
                units.percent(t.index_share),
                units.size(t.table_bytes),
            )
        out.append(_section("Scans per table (most rows read by sequential scans first)", table))
    else:
        out.append(_none("Scans per table", "no scans counted yet"))
    if usage.least_used_indexes:
        table = _table()
        _text_column(table, "index")
        _text_column(table, "table")
        for name in ("scans", "size"):
            _number_column(table, name)
        table.add_column("kind", no_wrap=True)
        for i in usage.least_used_indexes:
            kind = "primary" if i.primary else "unique" if i.unique else ""
            table.add_row(
                _cell(i.index),
                _cell(i.table),
                units.count(i.idx_scan),
                units.size(i.index_bytes),
                kind,
            )
        out.append(_section("Least used indexes", table))
    return out


def _lag(seconds: float | None) -> str:
    return units.duration(seconds) if seconds is not None else "-"


def _replication(snap: Snapshot) -> RenderableType:
    rep = snap.replication
    if rep.replica is not None:
        r = rep.replica
        paused = ", replay paused" if r.replay_paused else ""
        return Text.assemble(
            ("Replication: ", "bold"),
            f"replica, last transaction replayed {_lag(r.replay_lag_seconds)} ago, "
            f"{units.size(r.replay_lag_bytes)} received and not yet replayed{paused}",
        )
    if not rep.standbys:
        return _none("Replication", "primary, no standbys connected")
    table = _table()
    _text_column(table, "standby")
    table.add_column("state", no_wrap=True)
    table.add_column("sync", no_wrap=True)
    for name in ("behind", "write lag", "flush lag", "replay lag"):
        _number_column(table, name)
    for s in rep.standbys:
        table.add_row(
            _cell(f"{s.application_name or '-'} ({s.client_addr or 'local'})"),
            s.state or "-",
            s.sync_state or "-",
            units.size(s.replay_lag_bytes),
            _lag(s.write_lag_seconds),
            _lag(s.flush_lag_seconds),
            _lag(s.replay_lag_seconds),
        )
    return _section("Replication: standbys of this primary", table)


def _statements(snap: Snapshot) -> Sequence[RenderableType]:
    st = snap.statements
    if not st.available:
        return [_none("Statements", st.reason or "pg_stat_statements is not available")]
    calls = snap.thresholds.statements_min_calls
    out: list[RenderableType] = []
    for title, rows in (
        ("Statements by total time", st.by_total),
        (f"Statements by mean time (at least {calls} calls)", st.by_mean),
    ):
        if not rows:
            out.append(_none(title))
            continue
        table = _table()
        for name in ("total", "calls", "mean"):
            _number_column(table, name)
        _text_column(table, "query")
        for row in rows:
            table.add_row(
                units.duration(row.total_ms / 1000),
                units.count(row.calls),
                units.duration(row.mean_ms / 1000),
                _cell(row.query),
            )
        out.append(_section(title, table))
    return out
