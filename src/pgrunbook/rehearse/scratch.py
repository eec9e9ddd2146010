"""The copy on plain PostgreSQL: a scratch database ``<db>_rehearse_<timestamp>``.

``CREATE DATABASE ... TEMPLATE <db>`` when no other session is connected to the source (the
server refuses a template in use), else ``pg_dump`` into a temporary file and ``pg_restore``
into an empty scratch database, refused above a size limit. The scratch database is dropped
afterwards, also when the rehearsal fails or is interrupted, unless it is to be kept.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal

import psycopg
from psycopg import errors, sql

from pgrunbook.backup import (
    BackupOptions,
    RestoreOptions,
    plan_backup,
    plan_restore,
    run_restore,
)
from pgrunbook.backup.dump import BackupFailedError
from pgrunbook.connect import connect
from pgrunbook.dsn import ConnInfo
from pgrunbook.errors import ConfigError, ConnectError, PgRunbookError

Method = Literal["template", "dump"]

DEFAULT_MAX_SIZE_MB: Final = 2048
MAX_IDENTIFIER: Final = 63
MAINTENANCE_DATABASES: Final = ("postgres", "template1")

CAN_CREATE_SQL: Final = "SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user"
SIZE_SQL: Final = "SELECT pg_database_size(%(db)s)"
OTHER_SESSIONS_SQL: Final = (
    "SELECT count(*) FROM pg_stat_activity WHERE datname = %(db)s AND pid <> pg_backend_pid()"
)
EXISTS_SQL: Final = "SELECT 1 FROM pg_database WHERE datname = %(db)s"
CREATE_FROM_TEMPLATE: Final = sql.SQL("CREATE DATABASE {scratch} TEMPLATE {source}")
CREATE_EMPTY: Final = sql.SQL("CREATE DATABASE {scratch} TEMPLATE template0")
DROP: Final = sql.SQL("DROP DATABASE IF EXISTS {scratch} WITH (FORCE)")


class ScratchRefusedError(PgRunbookError):
    """The copy cannot be made (too large, no CREATEDB): nothing was rehearsed."""


@dataclass(frozen=True)
class ScratchCopy:
    name: str
    method: Method
    info: ConnInfo  # the scratch database, same server and credentials as the source
    size_bytes: int
    seconds: float  # making the copy

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "scratch database",
            "name": self.name,
            "method": self.method,
            "size_bytes": self.size_bytes,
            "seconds": round(self.seconds, 3),
        }


def scratch_name(source: str, now: datetime | None = None) -> str:
    """``<db>_rehearse_YYYYMMDD_HHMMSS``, the source's part shortened to fit 63 bytes."""
    suffix = (now or datetime.now()).strftime("_rehearse_%Y%m%d_%H%M%S")
    head = source.encode()[: MAX_IDENTIFIER - len(suffix)].decode(errors="ignore")
    return head + suffix


@contextmanager
def maintenance_session(source: ConnInfo) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit session on the same server that is NOT on the source database (a
    template in use cannot be copied, and a database cannot be dropped from inside)."""
    problem: ConnectError | None = None
    for name in MAINTENANCE_DATABASES:
        try:
            conn = connect(source.with_params(dbname=name), autocommit=True)
        except ConnectError as exc:
            problem = exc
            continue
        with conn:
            yield conn
        return
    assert problem is not None
    raise ConnectError(
        f"cannot connect to the postgres or template1 database of {source.host} to make the "
        f"scratch copy: {problem.message}",
        "rehearse on a Neon branch instead (--via neon), or grant CONNECT on postgres",
    )


def _scalar(conn: psycopg.Connection[Any], query: str, params: dict[str, Any]) -> Any:
    row = conn.execute(query, params).fetchone()
    return None if row is None else row[0]


def check_can_copy(conn: psycopg.Connection[Any], source: str, max_size_mb: int) -> int:
    """The source's size in bytes; refuses without CREATEDB or above ``max_size_mb``."""
    if not _scalar(conn, CAN_CREATE_SQL, {}):
        raise ScratchRefusedError(
            f"role {conn.info.user} may not create databases, and the rehearsal copies "
            f"{source} into a scratch database",
            f"ALTER ROLE {conn.info.user} CREATEDB (as an administrator), or rehearse on a "
            "Neon branch (--via neon)",
        )
    size = int(_scalar(conn, SIZE_SQL, {"db": source}) or 0)
    if size > max_size_mb * 1024 * 1024:
        raise ScratchRefusedError(
            f"{source} is {size / 1048576:,.0f} MB, above the rehearsal's --max-size of "
            f"{max_size_mb:,} MB for a scratch copy",
            "pass --max-size MB to copy it anyway (it needs that much free disk), or "
            "rehearse on a Neon branch (--via neon), which copies nothing",
        )
    return size


def _create_from_template(conn: psycopg.Connection[Any], scratch: str, source: str) -> bool:
    """True when the TEMPLATE copy was made; False when another session is on the source."""
    if int(_scalar(conn, OTHER_SESSIONS_SQL, {"db": source}) or 0):
        return False
    query = CREATE_FROM_TEMPLATE.format(
        scratch=sql.Identifier(scratch), source=sql.Identifier(source)
    )
    try:
        conn.execute(query)
    except errors.ObjectInUse:  # someone connected between the check and the copy
        return False
    return True


def _dump_and_restore(
    conn: psycopg.Connection[Any], source: ConnInfo, scratch: ConnInfo, pg_bin: Path | None
) -> None:
    """pg_dump the source into a temporary directory and pg_restore it into ``scratch``
    (already created, empty). The archive is removed afterwards."""
    conn.execute(CREATE_EMPTY.format(scratch=sql.Identifier(scratch.dbname)))
    with tempfile.TemporaryDirectory(prefix="pgrunbook-rehearse-") as folder:
        archive = Path(folder) / "source.dump"
        with connect(source, autocommit=True) as src:
            plan = plan_backup(src, source, BackupOptions(output=archive, pg_bin=pg_bin))
        done = plan.invocation.run()
        if done.returncode != 0:
            raise BackupFailedError(
                f"pg_dump failed copying {source.dbname} for the rehearsal: "
                f"{plan.invocation.first_error(done.stderr)}",
                "nothing was rehearsed",
            )
        restore = plan_restore(archive, scratch, RestoreOptions(pg_bin=pg_bin))
        with connect(scratch, autocommit=True) as dst:
            run_restore(dst, restore)


def make_copy(
    conn: psycopg.Connection[Any],
    source: ConnInfo,
    name: str,
    *,
    max_size_mb: int = DEFAULT_MAX_SIZE_MB,
    pg_bin: Path | None = None,
) -> ScratchCopy:
    """Create scratch database ``name`` as a copy of ``source``; ``conn`` is a maintenance
    session on the same server. On failure the half-made scratch database is dropped."""
    started = time.monotonic()
    size = check_can_copy(conn, source.dbname, max_size_mb)
    if _scalar(conn, EXISTS_SQL, {"db": name}):
        raise ConfigError(f"a database named {name} already exists", "try again in a second")
    info = source.with_params(dbname=name)
    method: Method = "template"
    try:
        if not _create_from_template(conn, name, source.dbname):
            method = "dump"
            _dump_and_restore(conn, source, info, pg_bin)
    except BaseException:
        drop_copy(conn, name)
        raise
    return ScratchCopy(name, method, info, size, time.monotonic() - started)


def drop_copy(conn: psycopg.Connection[Any], name: str) -> None:
    conn.execute(DROP.format(scratch=sql.Identifier(name)))


@contextmanager
def scratch_copy(
    source: ConnInfo,
    *,
    keep: bool = False,
    max_size_mb: int = DEFAULT_MAX_SIZE_MB,
    pg_bin: Path | None = None,
    now: datetime | None = None,
) -> Iterator[ScratchCopy]:
    """A scratch copy of ``source`` for the block, dropped at its end unless ``keep``."""
    name = scratch_name(source.dbname, now)
    with maintenance_session(source) as conn:
        copy = make_copy(conn, source, name, max_size_mb=max_size_mb, pg_bin=pg_bin)
    try:
        yield copy
    finally:
        if not keep:
            with maintenance_session(source) as conn:
                drop_copy(conn, name)
