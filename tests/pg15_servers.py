"""PostgreSQL 15 servers from Debian's packages, shared by the tests that need them: plain
(``pg15``) and with pg_cron loaded (``pg15_cron``). .ci/run installs both packages, so CI
always runs these tests; elsewhere they are skipped with the reason."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgrunbook.dsn import ConnInfo
from pgrunbook.embedded import Binaries, LocalServer

PG15 = Path("/usr/lib/postgresql/15/bin/postgres")
PG_CRON = Path("/usr/lib/postgresql/15/lib/pg_cron.so")
CRON_SETTINGS = {
    "shared_preload_libraries": "'pg_cron'",
    "cron.database_name": "'postgres'",
    "cron.host": "'127.0.0.1'",  # jobs connect over the loopback the server listens on
}


@pytest.fixture(scope="module")
def pg15(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConnInfo]:
    if not PG15.exists():
        if os.environ.get("CI"):
            pytest.fail("CI must install postgresql-15 (see .ci/run)")
        pytest.skip("PostgreSQL 15 server binaries not installed (apt-get install postgresql-15)")
    server = LocalServer(tmp_path_factory.mktemp("pg15") / "data", Binaries.system(15))
    yield server.start()
    server.stop()


@pytest.fixture(scope="module")
def pg15_cron(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConnInfo]:
    """A PostgreSQL 15 server with pg_cron loaded (cron.database_name = postgres)."""
    if not (PG15.exists() and PG_CRON.exists()):
        if os.environ.get("CI"):
            pytest.fail("CI must install postgresql-15 and postgresql-15-cron (see .ci/run)")
        pytest.skip("pg_cron for PostgreSQL 15 not installed (apt-get install postgresql-15-cron)")
    server = LocalServer(
        tmp_path_factory.mktemp("pg15cron") / "data", Binaries.system(15), settings=CRON_SETTINGS
    )
    yield server.start()
    server.stop()
