"""The config file: ``pgrunbook.toml`` in the working directory, or ``--config FILE``.

Thresholds of discovery checks are overridden per check::

    [checks.dead_tuples]
    max_dead_ratio = 0.2

    [checks.bloat]
    enabled = false

and the Neon project the branch commands (``branch``, ``rehearse``, the safety gate) use when
neither ``--project`` nor ``NEON_PROJECT_ID`` names one::

    [neon]
    project_id = "wispy-lake-12345678"

A broken file, an unknown check or key, or a value of the wrong type is refused with one
line naming the file and the key.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

from pgrunbook.errors import ConfigError

DEFAULT_FILE: Final = "pgrunbook.toml"
T = TypeVar("T")


@dataclass(frozen=True)
class Config:
    path: Path | None = None
    checks: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    neon_project_id: str | None = None

    def check_section(self, check_id: str) -> Mapping[str, Any]:
        return self.checks.get(check_id, {})

    def enabled(self, check_id: str) -> bool:
        return bool(self.check_section(check_id).get("enabled", True))


def load_config(path: Path | None = None, *, cwd: Path | None = None) -> Config:
    """Read ``path`` (must exist), or ``pgrunbook.toml`` in ``cwd`` when there is one."""
    if path is None:
        default = (cwd or Path.cwd()) / DEFAULT_FILE
        if not default.is_file():
            return Config()
        path = default
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist", "check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}", "fix the file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}", "fix the file") from None
    unknown = sorted(set(data) - {"checks", "neon"})
    if unknown:
        raise ConfigError(
            f"config file {path}: unknown section [{unknown[0]}]",
            "known sections: [checks.<id>], [neon]",
        )
    checks = data.get("checks", {})
    if not isinstance(checks, dict) or not all(isinstance(v, dict) for v in checks.values()):
        raise ConfigError(
            f"config file {path}: [checks] must hold one table per check",
            "write [checks.<check id>] followed by key = value lines",
        )
    return Config(path, checks, _neon_project(path, data.get("neon", {})))


def _neon_project(path: Path, neon: Any) -> str | None:
    if not isinstance(neon, dict):
        raise ConfigError(f"config file {path}: [neon] must be a table", "write [neon] on a line")
    extra = sorted(set(neon) - {"project_id"})
    if extra:
        raise ConfigError(
            f"config file {path}: [neon] unknown key {extra[0]!r}", "known keys: project_id"
        )
    project = neon.get("project_id")
    if project is not None and (not isinstance(project, str) or not project.strip()):
        raise ConfigError(
            f"config file {path}: [neon] project_id must be a non-empty string",
            'write project_id = "<your project id>"',
        )
    return project.strip() if project else None


def _accepts(expected: Any, value: Any) -> bool:
    if expected in (float, "float"):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if expected in (int, "int"):
        return isinstance(value, int) and not isinstance(value, bool)
    if expected in (bool, "bool"):
        return isinstance(value, bool)
    if expected in (str, "str"):
        return isinstance(value, str)
    if expected in ("int | None", "float | None"):
        return value is None or _accepts(expected.split(" ")[0], value)
    if expected in ("tuple[str, ...]", "list[str]"):
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    return False


def apply_overrides(defaults: T, overrides: Mapping[str, Any], where: str) -> T:
    """``defaults`` (a frozen dataclass) with ``overrides`` applied, each type-checked."""
    if not overrides:
        return defaults
    assert dataclasses.is_dataclass(defaults) and not isinstance(defaults, type)
    fields = {f.name: f.type for f in dataclasses.fields(defaults)}
    changes: dict[str, Any] = {}
    for key, value in overrides.items():
        if key == "enabled":
            continue
        if key not in fields:
            known = ", ".join(sorted(fields)) or "none"
            raise ConfigError(f"{where}: unknown key {key!r}", f"known keys: {known}, enabled")
        if not _accepts(fields[key], value):
            raise ConfigError(
                f"{where}: {key} = {value!r} is not a {fields[key]}",
                "fix the value in the config file",
            )
        changes[key] = tuple(value) if isinstance(value, list) else value
    return dataclasses.replace(defaults, **changes)
