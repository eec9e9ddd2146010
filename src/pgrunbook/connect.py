"""Opening connections: timeouts, retries for cold starts, and one-line errors."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import psycopg
from psycopg.conninfo import make_conninfo

from pgrunbook import __version__
from pgrunbook.dsn import ConnInfo, scrub
from pgrunbook.errors import ConnectError

APPLICATION_NAME: Final = "pgrunbook"


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: a suspended Neon compute takes a few hundred ms to wake."""

    attempts: int = 4
    connect_timeout: int = 10
    first_delay: float = 0.25
    max_delay: float = 4.0

    def delays(self) -> list[float]:
        out, delay = [], self.first_delay
        for _ in range(self.attempts - 1):
            out.append(min(delay, self.max_delay) * random.uniform(0.8, 1.2))
            delay *= 2
        return out


DEFAULT_RETRY: Final = RetryPolicy()


@dataclass(frozen=True)
class _Diagnosis:
    reason: str
    hint: str
    transient: bool = False


def _diagnose(message: str, info: ConnInfo) -> _Diagnosis:
    """Turn a libpq connection error into a reason, a hint and whether retrying may help."""
    low = message.lower()
    where = f"{info.host}:{info.port}" if not info.host.startswith("/") else info.host
    if "password authentication failed" in low:
        return _Diagnosis(
            f"password authentication failed for user {info.user!r}",
            f"check the password in {info.source}",
        )
    if "no password supplied" in low or "fe_sendauth" in low:
        return _Diagnosis(
            f"the server wants a password for user {info.user!r} and none was given",
            f"add it to {info.source} (postgresql://USER:PASSWORD@HOST/DB) or set PGPASSWORD",
        )
    if "does not exist" in low and "database" in low:
        return _Diagnosis(
            f"database {info.dbname!r} does not exist on {where}",
            "check the database name at the end of the URL, or create it first",
        )
    if "does not exist" in low and "role" in low:
        return _Diagnosis(
            f"role {info.user!r} does not exist on {where}", f"check the user in {info.source}"
        )
    if "server does not support ssl" in low:
        return _Diagnosis(
            f"sslmode={info.params.get('sslmode')} requires SSL but the server at {where} "
            "does not offer it",
            "use sslmode=prefer or disable for a local server, or point at the right host",
        )
    if "no encryption" in low or "ssl off" in low or "ssl required" in low:
        return _Diagnosis(
            f"the server at {where} requires an encrypted connection",
            "add ?sslmode=require to the URL (Neon always requires it)",
        )
    if "no pg_hba.conf entry" in low or "pg_hba.conf rejects" in low:
        return _Diagnosis(
            f"the server at {where} does not accept user {info.user!r} from this host",
            "ask the database owner to allow it in pg_hba.conf, or use another role",
        )
    if (
        "could not translate host name" in low
        or "name or service not known" in low
        or "nodename nor servname" in low
        or "temporary failure in name resolution" in low
    ):
        return _Diagnosis(f"unknown host {info.host!r}", f"check the host name in {info.source}")
    if "connection refused" in low or "no such file or directory" in low:
        return _Diagnosis(
            f"connection refused by {where}",
            "is the server running and listening there? (for the demo: pgrunbook demo --keep)",
            transient=True,
        )
    if "timeout expired" in low or "timed out" in low:
        return _Diagnosis(
            f"timed out connecting to {where}",
            "check the host, the port and any firewall; a Neon compute may be waking up",
            transient=True,
        )
    if "the database system is starting up" in low or "shutting down" in low:
        return _Diagnosis(f"the server at {where} is starting or stopping", "try again", True)
    if "too many connections" in low or "remaining connection slots" in low:
        return _Diagnosis(
            f"the server at {where} has no free connection slots",
            "close idle connections (pgrunbook doctor connections) or raise max_connections",
            transient=True,
        )
    first = message.strip().splitlines()[0] if message.strip() else "unknown error"
    return _Diagnosis(first, f"check {info.source}", transient="compute" in low)


def connect(
    info: ConnInfo,
    *,
    autocommit: bool = False,
    retry: RetryPolicy = DEFAULT_RETRY,
    sleep: Callable[[float], None] = time.sleep,
) -> psycopg.Connection[tuple[object, ...]]:
    """Connect with a timeout, retrying transient failures with jittered backoff.

    Raises ConnectError with one line that names the target (password masked).
    """
    params = dict(info.params)
    params.setdefault("connect_timeout", str(retry.connect_timeout))
    params.setdefault("application_name", f"{APPLICATION_NAME}/{__version__}")
    conninfo = make_conninfo("", **params)
    delays = retry.delays()
    while True:
        try:
            conn: psycopg.Connection[tuple[object, ...]] = psycopg.connect(
                conninfo, autocommit=autocommit
            )
            return conn
        except psycopg.OperationalError as exc:
            diagnosis = _diagnose(str(exc), info)
            if diagnosis.transient and delays:
                sleep(delays.pop(0))
                continue
            reason = scrub(diagnosis.reason, info.password)
            raise ConnectError(
                f"cannot connect to {info.display()}: {reason}", diagnosis.hint
            ) from None
