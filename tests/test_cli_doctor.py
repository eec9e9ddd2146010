"""``pgrunbook doctor connection``: the human table, the JSON document, the environment."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from pgrunbook.cli.main import run
from pgrunbook.dsn import MASK, ConnInfo
from pgrunbook.serverinfo import EXTENSIONS
from tests.support import ROLE_PASSWORD, PgServer, scalar

PASSWORD = ROLE_PASSWORD


def url(info: ConnInfo) -> str:
    if info.password is None:
        return info.display()
    return info.display().replace(MASK, quote(info.password, safe=""), 1)


@pytest.fixture
def role_db(pg_server: PgServer, empty_db: ConnInfo, login_role: str) -> ConnInfo:
    """The empty database, reached as a new role that logs in with PASSWORD."""
    if pg_server.local is None:
        pytest.skip("logs in as a new role, which depends on the embedded server's pg_hba.conf")
    return empty_db.with_params(user=login_role, password=PASSWORD)


def doctor_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[dict[str, Any], str]:
    code = run(["doctor", "connection", "--json", *args])
    out, err = capsys.readouterr()
    assert code == 0, err
    document: dict[str, Any] = json.loads(out)
    return document, err


def test_help_lists_connection(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["doctor", "--help"]) == 0
    out = capsys.readouterr().out
    assert "Troubleshooting" in out
    assert "connection" in out


def test_json(capsys: pytest.CaptureFixture[str], pg_server: PgServer, role_db: ConnInfo) -> None:
    document, err = doctor_json(capsys, "--dsn", url(role_db))
    raw = json.dumps(document)
    assert PASSWORD not in raw
    assert PASSWORD not in err
    assert set(document) == {"reachable", "endpoints", "ddl_error", "notes", "server"}
    assert document["reachable"] is True
    assert document["ddl_error"] is None
    assert document["notes"] == []
    endpoints = document["endpoints"]
    assert set(endpoints) == {"app", "reads", "ddl"}
    assert endpoints["app"] == {
        "dsn": role_db.display(),
        "source": "--dsn",
        "pooled": False,
        "pooler_reason": "none detected from the host name or the URL "
        "(a pooler is invisible in SQL)",
    }
    assert endpoints["reads"] == endpoints["ddl"] == {"dsn": role_db.display(), "source": "--dsn"}
    assert f":{MASK}@" in endpoints["reads"]["dsn"]

    server = document["server"]
    assert server["version_num"] == int(str(scalar(role_db, "SHOW server_version_num")))
    assert server["major"] == server["version_num"] // 10000
    assert server["role"]["current_user"] == role_db.user
    assert server["role"]["superuser"] is False
    assert server["database"] == {
        "name": role_db.dbname,
        "owner": pg_server.admin.user,
        "owned": False,
    }
    assert server["schema"]["name"] == "public"
    assert server["schema"]["usage"] is True
    assert set(server["extensions"]) == set(EXTENSIONS)
    assert server["pooler"]["pooled"] is False
    assert server["neon"] is False


def test_json_has_nothing_else_on_stdout(
    capsys: pytest.CaptureFixture[str], pg_server: PgServer, empty_db: ConnInfo
) -> None:
    document, _ = doctor_json(capsys, "--dsn", url(empty_db))
    assert document["server"]["role"]["superuser"] is True
    if pg_server.local is not None:
        assert document["server"]["extensions"]["pg_stat_statements"]["preloaded"] is True


def test_human_table(capsys: pytest.CaptureFixture[str], role_db: ConnInfo) -> None:
    assert run(["doctor", "connection", "--dsn", url(role_db)]) == 0
    out, err = capsys.readouterr()
    assert PASSWORD not in out + err
    assert err == ""
    assert "pgrunbook doctor connection: reachable" in out
    version = str(scalar(role_db, "SHOW server_version"))
    assert f"PostgreSQL {version}" in out
    assert role_db.user in out
    for name in ("Endpoint (reads)", "Endpoint (DDL)", "Pooler", "Schema public", *EXTENSIONS):
        assert name in out


def test_pooled_database_url_from_the_environment(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    empty_db: ConnInfo,
) -> None:
    """A generic PgBouncer URL (pgbouncer=true) and no DIRECT_URL: reachable, but no DDL."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DIRECT_URL", raising=False)
    dsn = url(empty_db)
    monkeypatch.setenv(
        "DATABASE_URL", dsn + ("&" if "?" in dsn else "?") + "pgbouncer=true&connection_limit=3"
    )
    document, err = doctor_json(capsys)
    if empty_db.password:
        assert empty_db.password not in json.dumps(document) + err
    assert document["endpoints"]["app"]["source"] == "DATABASE_URL"
    assert document["endpoints"]["app"]["pooled"] is True
    assert "pgbouncer=true" in document["endpoints"]["app"]["pooler_reason"]
    assert document["endpoints"]["ddl"] is None
    assert "DATABASE_URL points at a connection pooler" in document["ddl_error"]
    assert document["server"]["pooler"]["pooled"] is True


def test_dotenv_in_working_directory(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    empty_db: ConnInfo,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("DIRECT_URL", raising=False)
    (tmp_path / ".env").write_text(f'DIRECT_URL="{url(empty_db)}"\n')
    document, _ = doctor_json(capsys)
    assert document["endpoints"]["ddl"]["source"] == f"DIRECT_URL in {tmp_path / '.env'}"
    assert document["server"]["database"]["name"] == empty_db.dbname
