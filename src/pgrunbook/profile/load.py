"""Reading a profile file (TOML), the built-in one by default."""

from __future__ import annotations

import string
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any, Final

from pgrunbook.errors import ConfigError
from pgrunbook.profile import querytext
from pgrunbook.profile.model import (
    CADENCES,
    AuditSpec,
    ConstraintFix,
    ConstraintSpec,
    IndexColumn,
    IndexSpec,
    ParamSpec,
    Predicate,
    Profile,
    QuerySpec,
    RetentionPolicy,
    RolesSpec,
)

BUILTIN = "ali.toml"
CONSTRAINT_KEYS: Final = frozenset(
    {"name", "table", "check", "values", "fix_set", "fix_delete", "fix_note"}
)
AUDIT_KEYS: Final = frozenset({"table", "row_change_tables"})
ROLES_KEYS: Final = frozenset({"user", "readonly", "admin"})
INDEX_KEYS: Final = frozenset({"name", "table", "columns", "where", "values", "serves"})
QUERY_KEYS: Final = frozenset({"name", "description", "table", "index", "accept", "sql", "params"})
PARAM_KEYS: Final = frozenset({"value", "from", "where", "values"})
RETENTION_KEYS: Final = frozenset(
    {"name", "table", "column", "older_than_days", "where", "values", "cadence"}
)


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
        template = self.text(entry, key, where)
        try:
            fields = list(string.Formatter().parse(template))
        except ValueError as exc:
            raise self.fail(f"{where}: {key} is not a valid template ({exc})") from None
        for _, name, spec, conversion in fields:
            if name is None:
                continue
            if not name.isidentifier() or spec or conversion:
                shown = (
                    name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
                )
                raise self.fail(
                    f"{where}: {key} has a bad placeholder {{{shown}}} "
                    "(write {column} or {value_name})"
                )
        return Predicate(template, values)

    def entries(self, data: dict[str, Any], section: str) -> list[dict[str, Any]]:
        """The ``[[section]]`` entries, refusing anything else under that name."""
        entries = data.get(section, [])
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise self.fail(f"{section} must be written as [[{section}]] entries")
        return entries

    def known_keys(self, entry: dict[str, Any], keys: frozenset[str], where: str) -> None:
        """Refuse a misspelt key: a dropped ``where`` would widen a cleanup's DELETE."""
        unknown = sorted(set(entry) - keys)
        if unknown:
            known = ", ".join(sorted(keys))
            raise self.fail(f"{where}: unknown key {unknown[0]!r} (known keys: {known})")


def parse_profile(text: str, source: str) -> Profile:
    read = _Reader(source)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise read.fail(f"not valid TOML ({exc})") from None
    constraints = []
    for i, entry in enumerate(read.entries(data, "constraints")):
        where = f"[[constraints]] #{i + 1}"
        name = read.text(entry, "name", where)
        read.known_keys(entry, CONSTRAINT_KEYS, name)
        constraints.append(
            ConstraintSpec(
                name=name,
                table=read.text(entry, "table", name),
                check=read.predicate(entry, "check", name),
                fix=_fix(read, entry, name),
            )
        )
    retention = []
    for i, entry in enumerate(read.entries(data, "retention")):
        name = read.text(entry, "name", f"[[retention]] #{i + 1}")
        read.known_keys(entry, RETENTION_KEYS, name)
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
    indexes = [_index(read, i, entry) for i, entry in enumerate(read.entries(data, "indexes"))]
    names = [c.name for c in constraints] + [r.name for r in retention] + [x.name for x in indexes]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise read.fail(f"the name {duplicates[0]!r} is used twice")
    queries = [_query(read, i, entry) for i, entry in enumerate(read.entries(data, "queries"))]
    query_names = [q.name for q in queries]
    repeated = sorted({n for n in query_names if query_names.count(n) > 1})
    if repeated:
        raise read.fail(f"the query name {repeated[0]!r} is used twice")
    return Profile(
        name=str(data.get("name", "custom")),
        description=str(data.get("description", "")),
        constraints=tuple(constraints),
        retention=tuple(retention),
        indexes=tuple(indexes),
        queries=tuple(queries),
        audit=_audit(read, data),
        roles=_roles(read, data),
        source=source,
    )


def _fix(read: _Reader, entry: dict[str, Any], name: str) -> ConstraintFix:
    note = entry.get("fix_note", "")
    if not isinstance(note, str):
        raise read.fail(f'{name}: fix_note must be "text"')
    delete = entry.get("fix_delete", False)
    if not isinstance(delete, bool):
        raise read.fail(f"{name}: fix_delete must be true or false")
    if "fix_set" in entry:
        if delete:
            raise read.fail(f"{name}: give fix_set or fix_delete, not both")
        return ConstraintFix(set=read.predicate(entry, "fix_set", name), note=note)
    return ConstraintFix(delete=delete, note=note)


def _section(
    read: _Reader, data: dict[str, Any], name: str, keys: frozenset[str]
) -> dict[str, Any]:
    section = data.get(name, {})
    if not isinstance(section, dict):
        raise read.fail(f"{name} must be written as a [{name}] table")
    read.known_keys(section, keys, f"[{name}]")
    return section


def _audit(read: _Reader, data: dict[str, Any]) -> AuditSpec:
    section = _section(read, data, "audit", AUDIT_KEYS)
    tables = section.get("row_change_tables", [])
    if not isinstance(tables, list) or not all(isinstance(t, str) and t for t in tables):
        raise read.fail('[audit] row_change_tables must be a list of table names ["Wallet"]')
    return AuditSpec(read.text(section, "table", "[audit]", AuditSpec.table), tuple(tables))


def _roles(read: _Reader, data: dict[str, Any]) -> RolesSpec:
    section = _section(read, data, "roles", ROLES_KEYS)
    default = RolesSpec()
    spec = RolesSpec(
        read.text(section, "user", "[roles]", default.user),
        read.text(section, "readonly", "[roles]", default.readonly),
        read.text(section, "admin", "[roles]", default.admin),
    )
    if len(set(spec.names())) != 3:
        raise read.fail("[roles] user, readonly and admin must be three different names")
    return spec


def _index(read: _Reader, i: int, entry: dict[str, Any]) -> IndexSpec:
    name = read.text(entry, "name", f"[[indexes]] #{i + 1}")
    read.known_keys(entry, INDEX_KEYS, name)
    if len(name.encode()) > 63:
        raise read.fail(f"{name}: index names are at most 63 bytes")
    raw = entry.get("columns")
    if not isinstance(raw, list) or not raw or not all(isinstance(c, str) for c in raw):
        raise read.fail(f'{name} needs columns = ["column", "other DESC", ...]')
    try:
        columns = tuple(IndexColumn.parse(c) for c in raw)
    except ValueError as exc:
        raise read.fail(f"{name}: {exc}") from None
    where = entry.get("where", [])
    if isinstance(where, str):
        where = [where]
    if not isinstance(where, list) or not all(isinstance(w, str) for w in where):
        raise read.fail(f'{name}: where must be "predicate" or a list of alternatives')
    predicates = tuple(read.predicate({**entry, "where": w}, "where", name) for w in where)
    serves = entry.get("serves", "")
    return IndexSpec(name, read.text(entry, "table", name), columns, predicates, str(serves))


def _query(read: _Reader, i: int, entry: dict[str, Any]) -> QuerySpec:
    name = read.text(entry, "name", f"[[queries]] #{i + 1}")
    read.known_keys(entry, QUERY_KEYS, name)
    text = read.text(entry, "sql", name)
    try:
        used = querytext.param_names(querytext.parse(text))
    except ValueError as exc:
        raise read.fail(f"{name}: sql has a {exc}") from None
    description = entry.get("description", "")
    if not isinstance(description, str):
        raise read.fail(f'{name}: description must be "text"')
    raw = entry.get("params", {})
    if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
        raise read.fail(f'{name}: params must be a table, e.g. params.room_id = {{ from = "T.c" }}')
    params = {key: _param(read, f"{name}: parameter {key}", value) for key, value in raw.items()}
    for key in used:
        if key not in params:
            raise read.fail(f"{name}: sql uses :{key} but params has no {key} = {{ ... }}")
    for key in params:
        if key not in used:
            raise read.fail(f"{name}: parameter {key} is not used in sql (write :{key})")
    accept = entry.get("accept", [])
    if not isinstance(accept, list) or not all(isinstance(a, str) and a for a in accept):
        raise read.fail(f'{name}: accept must be a list of index names ["idx_a", ...]')
    return QuerySpec(
        name=name,
        table=read.text(entry, "table", name),
        sql=text,
        index=read.text(entry, "index", name),
        description=description,
        params=params,
        accept=tuple(accept),
    )


def _param(read: _Reader, where: str, entry: dict[str, Any]) -> ParamSpec:
    read.known_keys(entry, PARAM_KEYS, where)
    if ("value" in entry) == ("from" in entry):
        raise read.fail(f'{where} needs value = ... or from = "Table.column" (one of them)')
    if "value" in entry:
        if "where" in entry:
            raise read.fail(f"{where}: where goes with from, not with a fixed value")
        value = entry["value"]
        if not isinstance(value, str | int | float | bool):
            raise read.fail(f"{where}: value must be a string, a number or true/false")
        return ParamSpec(value=value)
    source = entry["from"]
    if not isinstance(source, str) or len(source.split(".")) != 2 or not all(source.split(".")):
        raise read.fail(f'{where}: from must be "Table.column" (the column to sample)')
    predicate = read.predicate(entry, "where", where) if "where" in entry else None
    return ParamSpec(source=source, where=predicate)
