"""``pgrunbook profile export FILE``: the built-in profile, for users to edit."""

from __future__ import annotations

from pathlib import Path

import click

from pgrunbook.cli.common import err_console
from pgrunbook.errors import ConfigError
from pgrunbook.profile.load import builtin_text


@click.group(short_help="The app profile: the runbook's app-specific objects.")
def profile() -> None:
    """The profile holds the app-specific objects of the runbook (indexes, constraints and
    their data fixes, retention policies, the audit table, the role names). The built-in
    one is the Ali backend's; export it, edit it, and pass --profile FILE to any command."""


@profile.command(name="export", short_help="Write the built-in profile to FILE.")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
def export(file: Path, force: bool) -> None:
    """Write the built-in (Ali) profile to FILE, to edit and use with --profile FILE."""
    if file.exists() and not force:
        raise ConfigError(f"{file} already exists", "pass --force to overwrite it")
    try:
        file.write_text(builtin_text(), encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write {file}: {exc.strerror}", "choose another path") from None
    err_console.print(f"wrote the built-in profile to {file}; use it with --profile {file}")
