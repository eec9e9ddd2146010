"""``pgrunbook doctor``: troubleshooting (the runbook's section 7)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click
from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from pgrunbook.cli.common import (
    config_option,
    confirm,
    dry_run_option,
    dsn_option,
    emit_json,
    err_console,
    json_option,
    out_console,
    profile_option,
    schema_option,
    target_from,
    yes_option,
)
from pgrunbook.config import load_config
from pgrunbook.connect import connect
from pgrunbook.doctor import DoctorReport, IdleReport, Repair, diagnose, find_idle, terminate
from pgrunbook.doctor.connections import IdleSession, Session, terminate_sql
from pgrunbook.doctor.indexes import apply_repairs, plan_repairs
from pgrunbook.dsn import ConnInfo
from pgrunbook.profile import load_profile
from pgrunbook.report import units
from pgrunbook.report.findings_table import findings_table, not_run_lines, summary_line
from pgrunbook.serverinfo import ConnectionReport, ExtensionInfo, ServerInfo, check_connection

# The runbook's example: sessions idle for ten minutes.
LIST_IDLE_MINUTES = 10.0


@click.group(invoke_without_command=True)
@dsn_option
@schema_option()
@config_option
@profile_option
@click.option(
    "--fix",
    is_flag=True,
    help="Rebuild invalid indexes: DROP and CREATE INDEX CONCURRENTLY from the recorded "
    "definition, under a lock timeout.",
)
@dry_run_option
@yes_option
@click.option("--verbose", "-v", is_flag=True, help="Show every info finding.")
@json_option
@click.pass_context
def doctor(
    ctx: click.Context,
    dsn: str | None,
    schema: str | None,
    config_path: Path | None,
    profile_path: Path | None,
    fix: bool,
    dry_run: bool,
    yes: bool,
    verbose: bool,
    as_json: bool,
) -> None:
    """Troubleshooting: diagnose the runbook's section 7 cases, check the connection.

    Without a subcommand, runs every diagnosis: invalid indexes (with the commands that
    drop and recreate them), constraints left NOT VALID and the rows that violate them,
    connection pressure (slots in use, idle and idle-in-transaction sessions), and slow
    queries from pg_stat_statements. --fix rebuilds the invalid indexes CONCURRENTLY
    (--dry-run prints the SQL). Exit code 1 when a problem at warning or above was found
    and not fixed.
    """
    if ctx.invoked_subcommand is not None:
        return
    config = load_config(config_path)
    target = target_from(dsn)
    with err_console.status("doctor") as status:
        report = diagnose(
            target.reader(),
            schema=schema,
            config=config,
            profile=load_profile(profile_path),
            on_check=lambda check: status.update(f"doctor: {check.title}"),
        )
    if fix:
        _fix(report, target.reader() if dry_run else target.session("doctor --fix"), dry_run, yes)
    if as_json:
        emit_json(report.to_json())
    else:
        out_console.print(render_diagnosis(report, verbose=verbose))
        # One line per repair and per statement, never wrapped: they are meant to be copied.
        for line in repair_lines(report.repairs, dry_run):
            out_console.print(line, soft_wrap=True)
        out_console.print(summary(report))
    if report.exit_code:
        raise click.exceptions.Exit(report.exit_code)


def _fix(report: DoctorReport, info: ConnInfo, dry_run: bool, yes: bool) -> None:
    with connect(info, autocommit=True) as conn:
        report.repairs = plan_repairs(conn, report.discovery.schema)
        planned = [r for r in report.repairs if r.status == "planned"]
        if dry_run or not planned:
            return
        names = ", ".join(r.object for r in planned)
        if not confirm(f"Repair {len(planned)} invalid index(es) ({names}) CONCURRENTLY?", yes):
            raise click.exceptions.Abort()
        with err_console.status("doctor --fix") as status:
            for repair in planned:
                status.update(f"doctor --fix: {repair.action} {repair.object}")
                apply_repairs(
                    conn,
                    [repair],
                    on_note=lambda text: err_console.print(f"note: {text}", soft_wrap=True),
                )


def render_diagnosis(report: DoctorReport, *, verbose: bool = False) -> RenderableType:
    """The human report: header, findings, checks that did not run."""
    discovery = report.discovery
    parts: list[RenderableType] = [
        Text.assemble(
            ("pgrunbook doctor", "bold"),
            f": database {discovery.database}, schema {discovery.schema}, "
            f"PostgreSQL {discovery.server.version}",
        )
    ]
    if report.findings:
        parts.append(findings_table(report.findings, verbose=verbose))
    else:
        parts.append(Text("No problems found.", style="green"))
    parts += not_run_lines(discovery.checks)
    return Group(*parts)


def repair_lines(repairs: list[Repair], dry_run: bool) -> list[Text]:
    """What --fix did (or, with --dry-run, the SQL it would run), one line each."""
    if not repairs:
        return []
    title = "--fix --dry-run: the SQL that would run" if dry_run else "--fix:"
    lines = [Text(title, style="bold")]
    for repair in repairs:
        if repair.status == "planned":
            lines.append(Text(f"-- {repair.action} {repair.object}", style="dim"))
            lines += [Text(statement, style="green") for statement in repair.sql]
            continue
        style = "green" if repair.fixed else "red" if repair.status == "failed" else "yellow"
        line = Text(f"{repair.status} {repair.object}", style=style)
        if repair.reason:
            line.append(f": {repair.reason}")
        if repair.status == "failed":
            if not repair.leftover:
                line.append("; no invalid index is left")
            line.append(f"; recorded definition: {repair.index.definition}")
        lines.append(line)
    return lines


def summary(report: DoctorReport) -> Text:
    unresolved = len(report.unresolved)
    tail = f"; {unresolved} problem(s) at warning or above remain" if unresolved else ""
    return Text(f"{summary_line(report.findings)}{tail}")


@doctor.command("connections", short_help="Idle sessions; terminate the old ones safely.")
@dsn_option
@click.option(
    "--terminate-idle",
    "minutes",
    type=click.FloatRange(min=0),
    default=None,
    metavar="MINUTES",
    help="Terminate sessions idle for longer than this (fractions allowed: 0.5 is 30 s).",
)
@click.option(
    "--user",
    "users",
    multiple=True,
    metavar="NAME",
    help="Only this user's sessions, even a superuser's or the database owner's (repeatable).",
)
@click.option("--all-databases", is_flag=True, help="Sessions of every database, not this one's.")
@yes_option
@dry_run_option
@json_option
def connections(
    dsn: str | None,
    minutes: float | None,
    users: tuple[str, ...],
    all_databases: bool,
    yes: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """List idle sessions, and with --terminate-idle terminate the old ones.

    Lists client sessions idle for longer than MINUTES (without --terminate-idle: ten
    minutes, listed only), and sessions idle in a transaction apart (never terminated).
    Never terminates the current session, nor a superuser's or the database owner's
    session unless that user is named with --user. Each session is terminated only if it
    is still idle past the limit at that moment. Asks first, or needs --yes when not
    interactive; --dry-run prints the pids and the SQL.
    """
    target = target_from(dsn)
    terminating = minutes is not None
    acting = terminating and not dry_run
    limit = (LIST_IDLE_MINUTES if minutes is None else minutes) * 60
    info = target.session("doctor connections --terminate-idle") if acting else target.reader()
    with connect(info, autocommit=True) as conn:
        report = find_idle(conn, limit, users=users, all_databases=all_databases)
        statements = [terminate_sql(conn, report, e) + ";" for e in report.eligible]
        acting = acting and bool(report.eligible)
        if acting:
            if not as_json:
                out_console.print(render_idle(report, terminating=True))
            pids = ", ".join(str(e.session.pid) for e in report.eligible)
            if not confirm(f"Terminate {len(report.eligible)} idle session(s) (pid {pids})?", yes):
                raise click.exceptions.Abort()
            terminate(conn, report)
    if as_json:
        document = report.to_json()
        if terminating and dry_run:
            document["sql"] = statements
        emit_json(document)
    elif acting:
        out_console.print(_outcome(report))
    else:
        out_console.print(render_idle(report, terminating=terminating))
        if terminating and dry_run and statements:
            out_console.print(Text("--dry-run: the SQL that would run", style="bold"))
            for statement in statements:
                out_console.print(Text(statement, style="green"), soft_wrap=True)


def render_idle(report: IdleReport, *, terminating: bool) -> RenderableType:
    """Session counts by state, then the idle sessions and those idle in a transaction."""
    where = "all databases" if report.all_databases else f"database {report.database}"
    states = ", ".join(f"{n} {state}" for state, n in report.states.items()) or "none"
    parts: list[RenderableType] = [
        Text.assemble(("pgrunbook doctor connections", "bold"), f": {where}; sessions: {states}")
    ]
    if report.hidden:
        parts.append(
            Text(
                f"{report.hidden} session(s) of other roles are hidden from this role "
                "(their details need pg_read_all_stats)",
                style="yellow",
            )
        )
    older = units.duration(report.limit_seconds)
    if report.idle:
        parts.append(_sessions(f"Idle for over {older}", report.idle))
    else:
        parts.append(Text(f"No session idle for over {older}.", style="green"))
    if report.protected and not report.users:
        parts.append(
            Text(
                "Sessions of superusers and of the database owner are kept; name the user "
                "with --user to include them.",
                style="dim",
            )
        )
    if report.idle_in_transaction:
        title = f"Idle in a transaction for over {older} (not terminated here)"
        parts.append(_sessions(title, report.idle_in_transaction))
        parts.append(
            Text(
                "Terminating them would roll back their work; end them in the application, "
                "or set idle_in_transaction_session_timeout.",
                style="dim",
            )
        )
    if not terminating and report.eligible:
        parts.append(Text("Terminate them with --terminate-idle MINUTES.", style="dim"))
    return Group(*parts)


def _sessions(title: str, entries: Sequence[IdleSession | Session]) -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False)
    columns = ["pid", "user", "database", "application", "client", "idle for"]
    with_status = any(isinstance(entry, IdleSession) for entry in entries)
    for name in [*columns, *(["status"] if with_status else [])]:
        table.add_column(name, no_wrap=name != "status", overflow="fold")
    for entry in entries:
        session = entry.session if isinstance(entry, IdleSession) else entry
        cells = [
            str(session.pid),
            session.user or "-",
            session.database or "-",
            session.application_name or "-",
            session.client_addr or "local",
            units.duration(session.idle_seconds),
        ]
        if isinstance(entry, IdleSession):
            cells.append(entry.status + (f": {entry.reason}" if entry.reason else ""))
        table.add_row(*cells)
    return table


def _outcome(report: IdleReport) -> RenderableType:
    """What --terminate-idle did, one line per session it tried."""
    lines = Text()
    protected = report.protected
    for entry in report.idle:
        if entry in protected:
            continue
        style = "green" if entry.status == "terminated" else "yellow"
        lines.append(f"{entry.status} pid {entry.session.pid} ({entry.session.user})", style=style)
        lines.append(f": {entry.reason}\n" if entry.reason else "\n")
    skipped = sum(1 for e in report.idle if e.status == "skipped")
    lines.append(f"{len(report.terminated)} terminated, {skipped} skipped")
    return lines


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
