"""Reading a custom-format archive's table of contents with ``pg_restore --list``.

Each TOC line is ``dumpId; tableoid oid DESC SCHEMA NAME OWNER``; the header says which
pg_dump wrote the archive. Only the entries pgrunbook reasons about are parsed: schemas,
tables and table data (names may hold spaces; schemas and owners are taken as one word).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pgrunbook.backup.invocation import Invocation
from pgrunbook.backup.tools import ClientTool
from pgrunbook.errors import ConfigError

PLAIN_MARKER: Final = "-- PostgreSQL database dump"
_ENTRY = re.compile(
    r"^(?P<id>\d+); \d+ \d+ (?P<desc>TABLE DATA|TABLE|SCHEMA) (?P<schema>\S+) (?P<name>.+) \S+$"
)
_DUMPED_BY = re.compile(r"^;\s+Dumped by pg_dump version: (?P<major>\d+)", re.M)
_DBNAME = re.compile(r"^;\s+dbname: (?P<name>.*)$", re.M)


class ArchiveError(ConfigError):
    """The file is missing, unreadable or not an archive pg_restore can read."""


@dataclass(frozen=True)
class ArchiveToc:
    """What an archive holds, as far as backup verification and restore need."""

    dbname: str
    dumped_by_major: int | None
    tables: tuple[tuple[str, str], ...]  # (schema, name) with a TABLE entry
    data: frozenset[tuple[str, str]]  # (schema, name) with a TABLE DATA entry
    entries: int

    @property
    def schemas(self) -> list[str]:
        """The schemas whose tables the archive restores."""
        return sorted({schema for schema, _ in self.tables})


def parse_toc(text: str) -> ArchiveToc:
    tables: list[tuple[str, str]] = []
    data: set[tuple[str, str]] = set()
    entries = 0
    for line in text.splitlines():
        if not line or line.startswith(";"):
            continue
        entries += 1
        match = _ENTRY.match(line)
        if match is None:
            continue
        key = (match["schema"], match["name"])
        if match["desc"] == "TABLE":
            tables.append(key)
        elif match["desc"] == "TABLE DATA":
            data.add(key)
    dumped_by = _DUMPED_BY.search(text)
    dbname = _DBNAME.search(text)
    return ArchiveToc(
        dbname=dbname["name"].strip() if dbname else "",
        dumped_by_major=int(dumped_by["major"]) if dumped_by else None,
        tables=tuple(tables),
        data=frozenset(data),
        entries=entries,
    )


def check_readable(path: Path) -> None:
    """One line when the file cannot be read at all, or is a plain SQL dump."""
    try:
        with path.open("rb") as stream:
            head = stream.read(256)
    except IsADirectoryError:
        return  # a directory-format archive: pg_restore reads it
    except OSError as exc:
        raise ArchiveError(
            f"cannot read the backup file {path}: {exc.strerror or exc}",
            "check the path and its permissions",
        ) from None
    if head.lstrip().startswith(b"--") and PLAIN_MARKER.encode() in head:
        raise ArchiveError(
            f"{path} is a plain SQL dump (pg_dump --schema-only or -Fp), not an archive",
            f"load it with psql -X -v ON_ERROR_STOP=1 -f {path} into an empty database",
        )


def read_toc(tool: ClientTool, path: Path) -> ArchiveToc:
    """``pg_restore --list``; ArchiveError (one line) when it cannot read the file."""
    check_readable(path)
    invocation = Invocation([str(tool.path), "--list", str(path)])
    done = invocation.run(timeout=300)
    if done.returncode != 0:
        raise ArchiveError(
            f"{tool.name} {tool.version} cannot read {path}: {invocation.first_error(done.stderr)}",
            "is it a pg_dump archive (-Fc, -Fd or -Ft), complete, and written by a pg_dump "
            f"no newer than {tool.major}?",
        )
    return parse_toc(done.stdout)
