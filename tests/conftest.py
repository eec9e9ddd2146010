"""Fixtures: one real PostgreSQL server per test session and a fresh database per test.

The server is the embedded PostgreSQL 18 by default. ``PGRUNBOOK_TEST_DSN`` points the suite
at any other server (a superuser DSN); ``PGRUNBOOK_TEST_PG=15`` starts the Debian PostgreSQL
15 binaries instead. Fresh databases are cloned from template databases that already hold
the reference schema and tiny-scale data, so a test starts in milliseconds.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pgrunbook.connect import connect
from pgrunbook.dsn import ConnInfo, parse_dsn
from pgrunbook.embedded import Binaries, LocalServer
from pgrunbook.errors import PgRunbookError
from pgrunbook.reference import Naming
from tests.support import (
    FAST_RETRY,
    ROLE_PASSWORD,
    TEST_ANCHOR,
    TEST_SEED,
    PgServer,
    SeededDb,
    Template,
)


def _start_server(tmp_root: Path) -> PgServer:
    external = os.environ.get("PGRUNBOOK_TEST_DSN")
    if external:
        admin = parse_dsn(external, "PGRUNBOOK_TEST_DSN")
        local = None
    else:
        major = os.environ.get("PGRUNBOOK_TEST_PG")
        binaries = Binaries.system(int(major)) if major else Binaries.embedded()
        local = LocalServer(tmp_root / "pgdata", binaries)
        admin = local.start()
    with connect(admin, retry=FAST_RETRY) as conn:
        row = conn.execute("SELECT current_setting('server_version_num')::int").fetchone()
        assert row is not None
    return PgServer(admin=admin, major=int(str(row[0])) // 10000, local=local)


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgServer]:
    try:
        server = _start_server(tmp_path_factory.mktemp("server"))
    except (PgRunbookError, OSError) as exc:
        pytest.exit(f"no PostgreSQL server for the tests: {exc}", returncode=3)
    yield server
    if server.local is not None:
        server.local.stop()


@pytest.fixture(autouse=True)
def _no_backup_gate(monkeypatch: pytest.MonkeyPatch) -> None:
    """The commands that change data take a backup first when none is recent (the safety
    gate); tests of other things say --backup none through its environment variable.
    tests/test_gate.py sets it back where it tests the gate."""
    monkeypatch.setenv("PGRUNBOOK_BACKUP", "none")
    monkeypatch.setenv("PGRUNBOOK_PREFLIGHT_SECONDS", "0.1")  # the pre-flight's rate sample


@pytest.fixture(autouse=True)
def _min_pg(request: pytest.FixtureRequest) -> None:
    marker = request.node.get_closest_marker("min_pg")
    if marker is not None:
        server: PgServer = request.getfixturevalue("pg_server")
        if server.major < marker.args[0]:
            pytest.skip(f"needs PostgreSQL {marker.args[0]}+, server is {server.major}")


def _template_name(naming: Naming) -> str:
    return f"pgrunbook_template_{naming.value}"


@pytest.fixture(scope="session")
def templates(pg_server: PgServer) -> dict[Naming, Template]:
    """Template databases with the reference schema and tiny data, one per naming."""
    from pgrunbook.seed import seed

    out = {}
    for naming in Naming:
        name = _template_name(naming)
        pg_server.drop_database(name)
        info = pg_server.create_database(name)
        report = seed(info, scale="tiny", naming=naming, seed=TEST_SEED, anchor=TEST_ANCHOR)
        out[naming] = Template(name, report)
    return out


@pytest.fixture
def make_db(pg_server: PgServer) -> Iterator[Callable[..., ConnInfo]]:
    """Factory: ``make_db()`` an empty database, ``make_db(template=name)`` a clone."""
    created: list[str] = []

    def factory(template: str | None = None) -> ConnInfo:
        name = f"t_{uuid.uuid4().hex[:12]}"
        created.append(name)
        return pg_server.create_database(name, template)

    yield factory
    for name in created:
        pg_server.drop_database(name)


@pytest.fixture
def empty_db(make_db: Callable[..., ConnInfo]) -> ConnInfo:
    return make_db()


@pytest.fixture
def db(make_db: Callable[..., ConnInfo], templates: dict[Naming, Template]) -> ConnInfo:
    """A fresh database with the reference schema (Prisma naming) and tiny-scale data."""
    return make_db(templates[Naming.PRISMA].name)


@pytest.fixture
def snake_db(make_db: Callable[..., ConnInfo], templates: dict[Naming, Template]) -> ConnInfo:
    """A fresh database with the reference schema in snake_case and tiny-scale data."""
    return make_db(templates[Naming.SNAKE].name)


@pytest.fixture(params=[Naming.PRISMA, Naming.SNAKE], ids=["db", "snake_db"])
def seeded_db(
    request: pytest.FixtureRequest,
    make_db: Callable[..., ConnInfo],
    templates: dict[Naming, Template],
) -> SeededDb:
    """``db`` and then ``snake_db`` (the test runs once for each naming), with the naming and
    the anomalies the seed injected."""
    naming: Naming = request.param
    template = templates[naming]
    return SeededDb(make_db(template.name), naming, template.report.anomalies)


@pytest.fixture
def login_role(pg_server: PgServer) -> Iterator[str]:
    """A LOGIN role without attributes, password ``ROLE_PASSWORD``, dropped afterwards."""
    name = f"pgr_login_{uuid.uuid4().hex[:8]}"
    pg_server.create_login_role(name, ROLE_PASSWORD)
    yield name
    pg_server.drop_role(name)
