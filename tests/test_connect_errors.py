"""Connection failures end as one line on stderr and exit code 2, never with the password.

Each case runs ``pgrunbook doctor connection`` against the real test server (or a port
nobody listens on, or a host that does not exist).
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

from pgrunbook.cli.main import run
from pgrunbook.connect import RetryPolicy, connect
from pgrunbook.dsn import MASK, ConnInfo, parse_dsn
from pgrunbook.embedded import LocalServer
from pgrunbook.errors import ConnectError
from tests.support import ROLE_PASSWORD, PgServer

PASSWORD = ROLE_PASSWORD


def url(info: ConnInfo) -> str:
    """The DSN as a URL with its real password: what a user would pass to --dsn."""
    if info.password is None:
        return info.display()
    return info.display().replace(MASK, quote(info.password, safe=""), 1)


def doctor_error(capsys: pytest.CaptureFixture[str], dsn: str, *secrets: str) -> str:
    """Run ``doctor connection --dsn DSN``; check the exit code and the one error line."""
    code = run(["doctor", "connection", "--dsn", dsn])
    out, err = capsys.readouterr()
    assert code == 2, err
    assert out == ""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for secret in secrets:
        assert secret not in err
    assert lines[0].startswith("error: ")
    return lines[0]


def local_server(pg_server: PgServer) -> LocalServer:
    if pg_server.local is None:
        pytest.skip("depends on the embedded server's pg_hba.conf (PGRUNBOOK_TEST_DSN is set)")
    return pg_server.local


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- configuration ------------------------------------------------------------------------


def test_malformed_dsn(capsys: pytest.CaptureFixture[str]) -> None:
    line = doctor_error(capsys, "postgresql://app:Hunter2pw@db.example.com:port/db", "Hunter2pw")
    assert line.startswith("error: malformed connection string in --dsn: ")


def test_password_with_unencoded_slash(capsys: pytest.CaptureFixture[str]) -> None:
    line = doctor_error(capsys, "postgresql://app:Hun/ter2@db.example.com/db", "Hun", "ter2")
    assert "must be URL-encoded" in line


def test_no_database_configured(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("DIRECT_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    assert run(["doctor", "connection"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("error: no database given; pass --dsn")
    assert len(err.strip().splitlines()) == 1


# -- the server cannot be reached ---------------------------------------------------------


def test_connection_refused(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    dsn = f"postgresql://app:Refus3dPw@127.0.0.1:{port}/db?connect_timeout=2"
    started = time.monotonic()
    line = doctor_error(capsys, dsn, "Refus3dPw")
    assert f"connection refused by 127.0.0.1:{port}" in line
    assert "is the server running" in line
    assert f"postgresql://app:{MASK}@127.0.0.1:{port}/db" in line
    assert time.monotonic() - started < 10  # three short retries, for cold starts


def test_unknown_host(capsys: pytest.CaptureFixture[str]) -> None:
    dsn = "postgresql://app:Unkn0wnPw@nonexistent.invalid/db?connect_timeout=2"
    line = doctor_error(capsys, dsn, "Unkn0wnPw")
    assert "unknown host 'nonexistent.invalid'" in line
    assert "check the host name in --dsn" in line


def test_connect_retries_only_transient_failures(pg_server: PgServer) -> None:
    slept: list[float] = []
    policy = RetryPolicy(attempts=3, connect_timeout=2, first_delay=0.1)
    refused = parse_dsn(f"postgresql://app:Refus3dPw@127.0.0.1:{free_port()}/db")
    with pytest.raises(ConnectError) as caught:
        connect(refused, retry=policy, sleep=slept.append)
    assert len(slept) == 2
    assert slept[0] < slept[1]
    assert "Refus3dPw" not in str(caught.value)

    slept.clear()
    with pytest.raises(ConnectError, match="does not exist"):
        connect(pg_server.dsn("pgrunbook_no_such_db"), retry=policy, sleep=slept.append)
    assert slept == []


# -- the server refuses us ----------------------------------------------------------------


def test_missing_database(capsys: pytest.CaptureFixture[str], pg_server: PgServer) -> None:
    info = pg_server.dsn("pgrunbook_no_such_db")
    line = doctor_error(capsys, url(info), *([info.password] if info.password else []))
    assert "database 'pgrunbook_no_such_db' does not exist" in line
    assert "create it first" in line


def test_wrong_password(
    capsys: pytest.CaptureFixture[str], pg_server: PgServer, login_role: str
) -> None:
    local_server(pg_server)
    info = pg_server.dsn("postgres", user=login_role, password="Wr0ng-Guess")
    line = doctor_error(capsys, url(info), "Wr0ng-Guess", PASSWORD)
    assert f"password authentication failed for user '{login_role}'" in line
    assert f"postgresql://{login_role}:{MASK}@" in line


def test_missing_password(
    capsys: pytest.CaptureFixture[str], pg_server: PgServer, login_role: str
) -> None:
    local_server(pg_server)
    info = pg_server.dsn("postgres", user=login_role)
    line = doctor_error(capsys, url(info), PASSWORD)
    assert f"the server wants a password for user '{login_role}'" in line


def test_unknown_role_with_password_authentication(
    capsys: pytest.CaptureFixture[str], pg_server: PgServer
) -> None:
    """A SCRAM server (like Neon) does not say whether the role exists."""
    local_server(pg_server)
    info = pg_server.dsn("postgres", user="pgrunbook_nobody", password="N0body-Pw")
    line = doctor_error(capsys, url(info), "N0body-Pw")
    assert "password authentication failed for user 'pgrunbook_nobody'" in line


@pytest.fixture
def trusted_unknown_role(pg_server: PgServer) -> Iterator[str]:
    """A role name pg_hba.conf trusts but the server does not know: 'role does not exist'."""
    local = local_server(pg_server)
    name = f"pgr_ghost_{uuid.uuid4().hex[:8]}"
    hba = local.data_dir / "pg_hba.conf"
    original = hba.read_text()
    hba.write_text(f"host all {name} 127.0.0.1/32 trust\n{original}")
    try:
        pg_server.execute("SELECT pg_reload_conf()")
        probe = pg_server.dsn("postgres", user=name).conninfo()
        deadline = time.monotonic() + 5
        while True:  # the postmaster reloads asynchronously
            try:
                psycopg.connect(probe).close()
            except psycopg.OperationalError as exc:
                if "does not exist" in str(exc) or time.monotonic() > deadline:
                    break
            time.sleep(0.05)
        yield name
    finally:
        hba.write_text(original)
        pg_server.execute("SELECT pg_reload_conf()")


def test_unknown_role(
    capsys: pytest.CaptureFixture[str], pg_server: PgServer, trusted_unknown_role: str
) -> None:
    info = pg_server.dsn("postgres", user=trusted_unknown_role, password="Gh0st-Pw")
    line = doctor_error(capsys, url(info), "Gh0st-Pw")
    assert f"role '{trusted_unknown_role}' does not exist on 127.0.0.1:" in line
    assert "check the user in --dsn" in line


def test_ssl_required_but_not_offered(
    capsys: pytest.CaptureFixture[str], pg_server: PgServer
) -> None:
    local_server(pg_server)  # the embedded server has no certificate
    info = pg_server.dsn("postgres", sslmode="require", password="Ss1-Pw")
    line = doctor_error(capsys, url(info), "Ss1-Pw")
    assert "sslmode=require requires SSL but the server at 127.0.0.1:" in line
    assert "does not offer it" in line
