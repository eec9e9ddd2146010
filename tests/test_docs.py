"""The docs stay honest: every command is documented, every documented command exists."""

from __future__ import annotations

import re
from pathlib import Path

import click

from pgrunbook.cli.main import cli

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()


def _commands(group: click.Group, prefix: str = "") -> list[str]:
    out = []
    for name, command in group.commands.items():
        out.append(f"{prefix}{name}")
        if isinstance(command, click.Group):
            out += _commands(command, f"{prefix}{name} ")
    return out


def test_every_command_has_help_and_is_in_the_readme() -> None:
    for name in _commands(cli):
        command: click.Command | None = cli
        for part in name.split():
            assert isinstance(command, click.Group)
            command = command.commands[part]
        assert command is not None and command.help, f"{name} has no help text"
        if not isinstance(command, click.Group):
            assert f"pgrunbook {name}" in README, f"pgrunbook {name} is not in the README"


def test_commands_in_the_readme_table_exist() -> None:
    documented = re.findall(r"^\| `pgrunbook ([a-z ]+)`", README, flags=re.M)
    assert documented
    existing = set(_commands(cli))
    for name in documented:
        assert name.strip() in existing, f"README documents a missing command: {name}"


def test_readme_test_command_is_what_ci_runs() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    blocks = re.findall(r"```bash\n(.+?)\n```", README)
    assert len(blocks) >= 2
    assert blocks[1] in ci.splitlines()


def test_docs_links_resolve() -> None:
    for link in re.findall(r"\]\(((?:docs|benchmarks)/[^)#]+)\)", README):
        assert (ROOT / link).exists(), link


def test_every_check_has_a_docs_page_linked_from_the_discover_page() -> None:
    from pgrunbook.discover import CHECKS

    overview = (ROOT / "docs" / "discover.md").read_text()
    for check in CHECKS:
        page = ROOT / check.docs
        assert page.exists(), f"{check.id} has no docs page {check.docs}"
        text = page.read_text()
        for heading in ("## Problem", "## What pgrunbook does", "## How to fix"):
            assert heading in text, f"{check.docs} lacks {heading!r}"
        assert f"(checks/{check.id}.md)" in overview, f"docs/discover.md does not link {check.id}"
