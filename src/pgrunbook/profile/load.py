"""Reading a profile file (TOML), the built-in one by default."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from pgrunbook.errors import ConfigError
from pgrunbook.profile.model import (
    CADENCES,
    ConstraintSpec,
    Predicate,
    Profile,
    RetentionPolicy,
)

BUILTIN = "ali.toml"


def builtin_text() -> str:
    return resources.files("pgrunbook.profile").joinpath(BUILTIN).read_text(encoding="utf-8")


def load_profile(path: Path | None = None) -> Profile:
    """The profile in ``path``, or the built-in Ali profile; one-line errors when broken."""
    if path is None:
        return parse_profile(builtin_text(), "built-in")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"profile {path} does not exist", "check the --profile path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read profile {path}: {exc}", "fix the file") from None
    return parse_profile(text, str(path))


class _Reader:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, what: str) -> ConfigError:
        return ConfigError(f"profile {self.source}: {what}", "fix the entry in the profile file")

    def text(self, entry: dict[str, Any], key: str, where: str, default: str | None = None) -> str:
        value = entry.get(key, default)
        if not isinstance(value, str) or not value:
            raise self.fail(f'{where} needs {key} = "..."')
        return value

    def predicate(self, entry: dict[str, Any], key: str, where: str) -> Predicate:
        values = entry.get("values", {})
        if not isinstance(values, dict):
            raise self.fail(f"{where}: values must be a table")
        predicate = Predicate(self.text(entry, key, where), values)
        try:
            missing = [n for n in predicate.names() if not n.isidentifier()]
        except ValueError as exc:
            raise self.fail(f"{where}: {key} is not a valid template ({exc})") from None
        if missing:
            raise self.fail(f"{where}: {key} has a bad placeholder {{{missing[0]}}}")
        return predicate


def parse_profile(text: str, source: str) -> Profile:
    read = _Reader(source)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise read.fail(f"not valid TOML ({exc})") from None
    constraints = []
    for i, entry in enumerate(data.get("constraints", [])):
        where = f"[[constraints]] #{i + 1}"
        name = read.text(entry, "name", where)
        constraints.append(
            ConstraintSpec(
                name=name,
                table=read.text(entry, "table", name),
                check=read.predicate(entry, "check", name),
            )
        )
    retention = []
    for i, entry in enumerate(data.get("retention", [])):
        name = read.text(entry, "name", f"[[retention]] #{i + 1}")
        days = entry.get("older_than_days")
        if not isinstance(days, int) or isinstance(days, bool) or days < 0:
            raise read.fail(f"{name} needs older_than_days = <whole number of days>")
        cadence = read.text(entry, "cadence", name, "daily")
        if cadence not in CADENCES:
            raise read.fail(f"{name}: cadence must be one of {', '.join(CADENCES)}")
        retention.append(
            RetentionPolicy(
                name=name,
                table=read.text(entry, "table", name),
                column=read.text(entry, "column", name),
                older_than_days=days,
                where=read.predicate(entry, "where", name) if "where" in entry else None,
                cadence=cadence,
            )
        )
    names = [c.name for c in constraints] + [r.name for r in retention]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise read.fail(f"the name {duplicates[0]!r} is used twice")
    return Profile(
        name=str(data.get("name", "custom")),
        description=str(data.get("description", "")),
        constraints=tuple(constraints),
        retention=tuple(retention),
        source=source,
    )
