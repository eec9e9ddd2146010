"""What every benchmark script needs around its measurement: a server (``--dsn``, or an
embedded PostgreSQL in a temporary directory), scratch databases dropped afterwards, and the
results JSON with the machine it ran on."""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from psycopg import sql

from pgrunbook.connect import connect
from pgrunbook.dsn import ConnInfo, parse_dsn
from pgrunbook.embedded import LocalServer

RESULTS: Final = Path(__file__).parent / "results"


def parser(doc: str | None) -> argparse.ArgumentParser:
    """The script's argument parser, described by its docstring's first line."""
    return argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)


@contextmanager
def server(dsn: str | None) -> Iterator[tuple[ConnInfo, Path]]:
    """A superuser on ``dsn``'s server, or on an embedded PostgreSQL started in a temporary
    directory and stopped afterwards; and that temporary directory (removed afterwards)."""
    with tempfile.TemporaryDirectory(prefix="pgrunbook-bench-") as tmp:
        local = None
        if dsn:
            admin = parse_dsn(dsn)
        else:
            local = LocalServer(Path(tmp) / "pgdata")
            admin = local.start()
        try:
            yield admin, Path(tmp)
        finally:
            if local is not None:
                local.stop()


def create_database(admin: ConnInfo, name: str, template: str | None = None) -> ConnInfo:
    query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template is not None:
        query += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
    with connect(admin, autocommit=True) as conn:
        conn.execute(query)
    return admin.with_params(dbname=name)


@contextmanager
def scratch(admin: ConnInfo, names: Sequence[str], roles: Sequence[str] = ()) -> Iterator[None]:
    """Drop the databases ``names`` (made in the block) and the ``roles`` afterwards."""
    try:
        yield
    finally:
        with connect(admin, autocommit=True) as conn:
            for name in names:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )
            for role in roles:
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def write_results(filename: str, document: object) -> Path:
    """Write ``benchmarks/results/<filename>``; returns its path."""
    out = RESULTS / filename
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(document, indent=2) + "\n")
    return out
