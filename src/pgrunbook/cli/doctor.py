"""``pgrunbook doctor``: troubleshooting."""

from __future__ import annotations

import click
from rich import box
from rich.table import Table
from rich.text import Text

from pgrunbook.cli.common import dsn_option, emit_json, json_option, out_console, target_from
from pgrunbook.serverinfo import ConnectionReport, ExtensionInfo, ServerInfo, check_connection


@click.group()
def doctor() -> None:
    """Troubleshooting: check the connection and diagnose common problems."""


@doctor.command("connection", short_help="Check reachability, version, privileges, pooler.")
@dsn_option
@json_option
def connection(dsn: str | None, as_json: bool) -> None:
    """Check that the database is reachable, and what pgrunbook may do there.

    Shows the endpoints used for reads and for DDL, the server version, the role's
    attributes and privileges, the extensions the runbook uses, and whether the URL points
    at a connection pooler. Exit code 2 when the database cannot be reached.
    """
    report = check_connection(target_from(dsn))
    if as_json:
        emit_json(report.to_json())
    else:
        out_console.print(render(report))


def _yes(flag: bool | None, unknown: str = "unknown") -> str:
    return unknown if flag is None else ("yes" if flag else "no")


def _extension(ext: ExtensionInfo) -> str:
    if ext.installed:
        text = f"installed {ext.installed_version} in schema {ext.installed_schema}"
        if ext.default_version and ext.default_version != ext.installed_version:
            text += f" ({ext.default_version} available)"
    elif ext.available:
        text = f"available ({ext.default_version}), not installed"
    else:
        text = "not available on this server"
    if ext.needs_preload and (ext.available or ext.preloaded):
        preloaded = _yes(ext.preloaded, "cannot tell (needs pg_read_all_settings)")
        text += f"; in shared_preload_libraries: {preloaded}"
    return text


def _server_rows(server: ServerInfo) -> list[tuple[str, str]]:
    role, db, schema = server.role, server.database, server.schema
    attributes = [
        name
        for name, on in (
            ("superuser", role.superuser),
            ("createrole", role.createrole),
            ("createdb", role.createdb),
            ("replication", role.replication),
            ("bypassrls", role.bypassrls),
        )
        if on
    ]
    user = role.current_user
    if role.session_user != role.current_user:
        user += f" (session user {role.session_user})"
    user += f": {', '.join(attributes) if attributes else 'no special attributes'}"
    predefined = ", ".join(
        f"{name} {_yes(getattr(role, name))}"
        for name in ("pg_read_all_stats", "pg_monitor", "pg_signal_backend")
    )
    if schema.exists:
        schema_text = (
            f"USAGE {_yes(schema.usage)}, CREATE {_yes(schema.create)} (owner {schema.owner})"
        )
    else:
        schema_text = "does not exist"
    return [
        (
            "Server",
            f"PostgreSQL {server.version} ({server.version_num}), "
            f"{'standby (read-only)' if server.in_recovery else 'primary'}, "
            f"started {server.started_at:%Y-%m-%d %H:%M:%S %Z}",
        ),
        ("Connections", f"{server.connections} of max_connections {server.max_connections}"),
        ("Neon", _yes(server.neon)),
        ("User", user),
        ("Predefined roles", predefined),
        (
            "Database",
            f"{db.name}, owner {db.owner} ({'you own it' if db.owned else 'not owned by you'})",
        ),
        (f"Schema {schema.name}", schema_text),
        *((ext.name, _extension(ext)) for ext in server.extensions),
    ]


def render(report: ConnectionReport) -> Table:
    """The human table of ``doctor connection``."""
    table = Table(
        title="pgrunbook doctor connection: reachable",
        title_justify="left",
        show_header=False,
        box=box.SIMPLE,
    )
    table.add_column("check", style="bold", no_wrap=True)
    table.add_column("result", overflow="fold")
    reads = report.reads
    ddl = f"{report.ddl.display()} ({report.ddl.source})" if report.ddl else "none"
    if report.ddl_error:
        ddl = f"none: {report.ddl_error}"
    rows = [
        ("Endpoint (reads)", f"{reads.display()} ({reads.source})"),
        ("Endpoint (DDL)", ddl),
        ("Pooler", report.server.pooler.reason),
    ]
    if report.app != reads:
        rows.insert(0, ("Endpoint (app)", f"{report.app.display()} ({report.app.source})"))
    rows += _server_rows(report.server)
    rows += [("Note", note) for note in report.notes]
    for name, value in rows:
        table.add_row(Text(name), Text(value))
    return table
