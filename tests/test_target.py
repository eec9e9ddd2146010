"""Which database, and which endpoint for what: --dsn > environment > .env (no server)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgrunbook.errors import ConfigError
from pgrunbook.target import Target, resolve_target

DIRECT = "postgresql://app:D1rectPw@db.example.com:5432/shop"
APP = "postgresql://app:AppPw77@db.example.com:6432/shop"
NEON_POOLED = (
    "postgresql://neondb_owner:N3onPw@ep-wild-sun-a1b2c3-pooler.eu-central-1.aws.neon.tech"
    "/neondb?sslmode=require&pgbouncer=true&connection_limit=1"
)
NEON_DIRECT_HOST = "ep-wild-sun-a1b2c3.eu-central-1.aws.neon.tech"
BOUNCER = "postgresql://app:B0uncerPw@pgbouncer.internal:6432/shop?pgbouncer=true"


class Notes:
    """A warn callback that remembers what it was told."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, text: str) -> None:
        self.seen.append(text)


def resolve(
    tmp_path: Path,
    dsn: str | None = None,
    environ: dict[str, str] | None = None,
    dotenv: str | None = None,
    warn: Notes | None = None,
) -> Target:
    if dotenv is not None:
        (tmp_path / ".env").write_text(dotenv)
    return resolve_target(dsn, environ=environ or {}, cwd=tmp_path, warn=warn or Notes())


# -- resolution order ---------------------------------------------------------------------


def test_dsn_wins_over_environment_and_dotenv(tmp_path: Path) -> None:
    target = resolve(
        tmp_path,
        dsn="postgresql://cli@cli-host/clidb",
        environ={"DATABASE_URL": APP, "DIRECT_URL": DIRECT},
        dotenv=f"DATABASE_URL={APP}\n",
    )
    assert target.app.host == "cli-host"
    assert target.app.source == "--dsn"
    assert target.reader() == target.app
    assert target.session() == target.app


def test_dsn_is_used_even_when_dotenv_is_broken(tmp_path: Path) -> None:
    target = resolve(tmp_path, dsn="postgresql://cli@cli-host/db", dotenv='X="unclosed\n')
    assert target.app.host == "cli-host"


def test_environment(tmp_path: Path) -> None:
    target = resolve(tmp_path, environ={"DATABASE_URL": APP, "DIRECT_URL": DIRECT})
    assert target.app.port == "6432"
    assert target.app.source == "DATABASE_URL"
    assert target.direct is not None
    assert target.direct.port == "5432"
    assert target.direct.source == "DIRECT_URL"
    assert target.reader() == target.direct
    assert target.session() == target.direct


def test_environment_wins_over_dotenv(tmp_path: Path) -> None:
    target = resolve(
        tmp_path,
        environ={"DATABASE_URL": APP},
        dotenv="DATABASE_URL=postgresql://other@other-host/db\n",
    )
    assert target.app.host == "db.example.com"
    assert target.app.source == "DATABASE_URL"


def test_dotenv_in_working_directory(tmp_path: Path) -> None:
    target = resolve(
        tmp_path, dotenv=f'# app settings\nDATABASE_URL="{APP}"\nDIRECT_URL={DIRECT}\n'
    )
    env_file = tmp_path / ".env"
    assert target.app.source == f"DATABASE_URL in {env_file}"
    assert target.direct is not None
    assert target.direct.source == f"DIRECT_URL in {env_file}"
    assert target.app.password == "AppPw77"


def test_precedence_is_per_variable(tmp_path: Path) -> None:
    """DATABASE_URL from the environment and DIRECT_URL from .env are used together."""
    target = resolve(
        tmp_path,
        environ={"DATABASE_URL": APP},
        dotenv=f"DIRECT_URL={DIRECT}\nDATABASE_URL=postgresql://ignored@ignored/db\n",
    )
    assert target.app.source == "DATABASE_URL"
    assert target.app.port == "6432"
    assert target.direct is not None
    assert target.direct.source.startswith("DIRECT_URL in ")
    assert target.direct.port == "5432"


def test_empty_variable_counts_as_unset(tmp_path: Path) -> None:
    target = resolve(tmp_path, environ={"DATABASE_URL": ""}, dotenv=f"DATABASE_URL={APP}\n")
    assert target.app.source.startswith("DATABASE_URL in ")


def test_only_direct_url(tmp_path: Path) -> None:
    target = resolve(tmp_path, environ={"DIRECT_URL": DIRECT})
    assert target.app == target.direct
    assert target.session().source == "DIRECT_URL"


def test_plain_database_url_serves_both(tmp_path: Path) -> None:
    warn = Notes()
    target = resolve(tmp_path, environ={"DATABASE_URL": APP}, warn=warn)
    assert target.reader() == target.app
    assert target.session() == target.app
    assert warn.seen == []


# -- poolers ------------------------------------------------------------------------------


def test_neon_pooled_url_derives_the_direct_host(tmp_path: Path) -> None:
    warn = Notes()
    target = resolve(tmp_path, environ={"DATABASE_URL": NEON_POOLED}, warn=warn)
    assert target.app.pooled
    assert warn.seen == []  # nothing said until session work is asked for
    assert target.reader().host == NEON_DIRECT_HOST
    assert warn.seen == []
    session = target.session("CREATE INDEX CONCURRENTLY")
    assert session.host == NEON_DIRECT_HOST
    assert not session.pooled
    assert session.password == "N3onPw"
    assert len(warn.seen) == 1
    assert NEON_DIRECT_HOST in warn.seen[0]
    assert "DIRECT_URL" in warn.seen[0]
    assert "N3onPw" not in warn.seen[0]


def test_neon_pooled_dsn_option_derives_the_direct_host(tmp_path: Path) -> None:
    target = resolve(tmp_path, dsn=NEON_POOLED)
    assert target.session().host == NEON_DIRECT_HOST


def test_neon_pooled_url_with_direct_url(tmp_path: Path) -> None:
    warn = Notes()
    direct = f"postgresql://neondb_owner:N3onPw@{NEON_DIRECT_HOST}/neondb?sslmode=require"
    target = resolve(
        tmp_path, environ={"DATABASE_URL": NEON_POOLED, "DIRECT_URL": direct}, warn=warn
    )
    assert target.session().source == "DIRECT_URL"
    assert target.notes == ()
    assert warn.seen == []


def test_pooled_direct_url_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve(tmp_path, environ={"DIRECT_URL": NEON_POOLED})
    text = str(caught.value)
    assert "DIRECT_URL points at a connection pooler" in text
    assert "N3onPw" not in text


def test_pgbouncer_direct_url_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="DIRECT_URL points at a connection pooler"):
        resolve(tmp_path, environ={"DATABASE_URL": APP, "DIRECT_URL": BOUNCER})


def test_pooled_non_neon_url_without_direct_url(tmp_path: Path) -> None:
    """No way to guess the direct host of a generic PgBouncer: refuse session work."""
    target = resolve(tmp_path, environ={"DATABASE_URL": BOUNCER})
    assert target.direct is None
    assert target.reader() == target.app  # reads may go through the pooler
    with pytest.raises(ConfigError) as caught:
        target.session("VACUUM")
    text = str(caught.value)
    assert "DATABASE_URL points at a connection pooler" in text
    assert "VACUUM needs a direct session" in text
    assert "set DIRECT_URL" in text
    assert "B0uncerPw" not in text


def test_pooled_non_neon_url_with_direct_url(tmp_path: Path) -> None:
    target = resolve(tmp_path, environ={"DATABASE_URL": BOUNCER, "DIRECT_URL": DIRECT})
    assert target.session().source == "DIRECT_URL"


# -- nothing, or something broken ---------------------------------------------------------


def test_no_configuration(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve(tmp_path)
    text = str(caught.value)
    assert text.startswith("no database given")
    assert "--dsn" in text
    assert "DATABASE_URL" in text


def test_dotenv_without_database_variables(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^no database given"):
        resolve(tmp_path, dotenv="SECRET_KEY=abc\nDEBUG=1\n")


def test_dotenv_that_is_a_directory_is_ignored(tmp_path: Path) -> None:
    (tmp_path / ".env").mkdir()
    with pytest.raises(ConfigError, match=r"^no database given"):
        resolve(tmp_path)


def test_dotenv_that_is_not_utf8(tmp_path: Path) -> None:
    (tmp_path / ".env").write_bytes(b"DATABASE_URL=postgresql://u:\xff\xfe@h/db\n")
    with pytest.raises(ConfigError) as caught:
        resolve(tmp_path)
    text = str(caught.value)
    assert text.startswith(f"cannot read {tmp_path / '.env'}")
    assert "fix or remove the file" in text


def test_dotenv_with_a_broken_line(tmp_path: Path) -> None:
    """python-dotenv would skip the line; "no database given" would then mislead."""
    with pytest.raises(ConfigError) as caught:
        resolve(tmp_path, dotenv='DEBUG=1\nDATABASE_URL="postgresql://u:Br0kenPw@h/db\n')
    text = str(caught.value)
    assert text.startswith(f"cannot parse {tmp_path / '.env'} at line 2")
    assert "Br0kenPw" not in text


def test_malformed_url_in_dotenv(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve(tmp_path, dotenv="DATABASE_URL=postgresql://u:M4lformed@h:port/db\n")
    text = str(caught.value)
    assert f"malformed connection string in DATABASE_URL in {tmp_path / '.env'}" in text
    assert "M4lformed" not in text


def test_malformed_url_in_environment(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve(tmp_path, environ={"DATABASE_URL": APP, "DIRECT_URL": "nonsense"})
    assert "malformed connection string in DIRECT_URL" in str(caught.value)
