"""A real PgBouncer in transaction mode in front of a test server (Debian's ``pgbouncer``).

One server connection per database and user (``default_pool_size = 1``): every client
transaction runs on the same server session, so session state one client leaves behind is
seen by the next. The superuser is trusted on loopback by the test server, so PgBouncer
needs no password. .ci/run installs the package; elsewhere the tests skip with the reason.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from pgrunbook.dsn import ConnInfo
from pgrunbook.embedded import SYSTEM_USER

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(target: ConnInfo, port: int, workdir: Path) -> str:
    return "\n".join(
        [
            "[databases]",
            f"* = host={target.host} port={target.port}",
            "[pgbouncer]",
            "listen_addr = 127.0.0.1",
            f"listen_port = {port}",
            "unix_socket_dir =",
            "auth_type = trust",
            f"auth_file = {workdir / 'users.txt'}",
            "pool_mode = transaction",
            "default_pool_size = 1",
            "max_client_conn = 50",
            "server_reset_query =",
            "ignore_startup_parameters = extra_float_digits,options",
            f"logfile = {workdir / 'pgbouncer.log'}",
            f"pidfile = {workdir / 'pgbouncer.pid'}",
            "",
        ]
    )


def _wait_for(port: int, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"PgBouncer did not listen on 127.0.0.1:{port}")


@contextmanager
def pgbouncer(target: ConnInfo) -> Iterator[ConnInfo]:
    """Run PgBouncer in front of ``target`` (a trusted superuser's DSN); yield the pooled
    DSN for the same database and user, flagged ``pgbouncer=true`` as Prisma writes it."""
    if not Path(PGBOUNCER).exists():
        if os.environ.get("CI"):
            pytest.fail("CI must install pgbouncer (see .ci/run)")
        pytest.skip("PgBouncer not installed (apt-get install pgbouncer)")
    # its own directory under /tmp: as root PgBouncer runs as another user, who cannot
    # enter pytest's private temporary directories
    workdir = Path(tempfile.mkdtemp(prefix="pgrunbook-pgbouncer-"))
    workdir.chmod(0o755)
    port = _free_port()
    (workdir / "users.txt").write_text(f'"{target.user}" ""\n')
    config = workdir / "pgbouncer.ini"
    config.write_text(_config(target, port, workdir))
    command = [PGBOUNCER, str(config)]
    if os.geteuid() == 0:  # PgBouncer refuses to run as root
        shutil.chown(workdir, SYSTEM_USER, SYSTEM_USER)
        for path in workdir.iterdir():
            shutil.chown(path, SYSTEM_USER, SYSTEM_USER)
        command = [PGBOUNCER, "-u", SYSTEM_USER, str(config)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(port)
        yield replace(
            target,
            params={**target.params, "host": "127.0.0.1", "port": str(port)},
            app_params={**target.app_params, "pgbouncer": "true"},
            source="DATABASE_URL",
        )
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)
