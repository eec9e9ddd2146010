"""DSN parsing, Prisma's extra parameters, pooler detection and password masking (no server)."""

from __future__ import annotations

import pytest

from pgrunbook.dsn import MASK, ConnInfo, mask_dsn, parse_dsn, scrub
from pgrunbook.errors import ConfigError

NEON_POOLED = (
    "postgresql://app:N3onS3cret@ep-cool-darkness-123456-pooler.us-east-2.aws.neon.tech/neondb"
    "?sslmode=require&pgbouncer=true&connection_limit=5&pool_timeout=10&schema=app"
)


def shown(info: ConnInfo) -> list[str]:
    """Every way a ConnInfo can end up in output."""
    return [info.display(), repr(info), str(info), f"{info}", f"{info!r}"]


# -- parsing ------------------------------------------------------------------------------


def test_url_form() -> None:
    info = parse_dsn("postgresql://alice:pw@db.example.com:6543/shop?sslmode=verify-full")
    assert info.params == {
        "user": "alice",
        "password": "pw",
        "host": "db.example.com",
        "port": "6543",
        "dbname": "shop",
        "sslmode": "verify-full",
    }
    assert (info.host, info.port, info.dbname, info.user) == (
        "db.example.com",
        "6543",
        "shop",
        "alice",
    )
    assert info.app_params == {}
    assert info.source == "--dsn"


def test_postgres_scheme_and_defaults() -> None:
    info = parse_dsn("postgres://bob@localhost", "DATABASE_URL")
    assert info.user == "bob"
    assert info.port == "5432"
    assert info.dbname == "bob"  # libpq's default: the user name
    assert info.password is None
    assert info.source == "DATABASE_URL"


def test_key_value_form() -> None:
    info = parse_dsn("host=db.internal port=5433 dbname=shop user=carol password='a b\\'c'")
    assert info.params == {
        "host": "db.internal",
        "port": "5433",
        "dbname": "shop",
        "user": "carol",
        "password": "a b'c",
    }
    assert info.display() == f"postgresql://carol:{MASK}@db.internal:5433/shop"


def test_prisma_params_are_kept_aside() -> None:
    info = parse_dsn(NEON_POOLED)
    assert info.app_params == {
        "pgbouncer": "true",
        "connection_limit": "5",
        "pool_timeout": "10",
        "schema": "app",
    }
    assert info.schema == "app"
    assert "sslmode" in info.params
    libpq = info.conninfo()
    for name in ("pgbouncer", "connection_limit", "pool_timeout", "schema"):
        assert name not in info.params
        assert name not in libpq
    # they stay visible in the display, which is what the user wrote
    assert "connection_limit=5" in info.display()


def test_schema_defaults_to_public() -> None:
    assert parse_dsn("postgresql://u@h/db").schema == "public"


def test_ipv6_host() -> None:
    info = parse_dsn("postgresql://u:pw@[2001:db8::1]:5433/db")
    assert info.host == "2001:db8::1"
    assert info.port == "5433"
    assert info.display() == f"postgresql://u:{MASK}@[2001:db8::1]:5433/db"
    assert parse_dsn(info.display().replace(MASK, "pw")).params == info.params


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql:///shop?host=/var/run/postgresql",
        "postgresql://%2Fvar%2Frun%2Fpostgresql/shop",
        "host=/var/run/postgresql dbname=shop",
    ],
)
def test_unix_socket_host(dsn: str) -> None:
    info = parse_dsn(dsn)
    assert info.host == "/var/run/postgresql"
    assert info.dbname == "shop"
    assert info.display() == "postgresql:///shop?host=%2Fvar%2Frun%2Fpostgresql".replace("%2F", "/")
    assert parse_dsn(info.display()).params == info.params


def test_unix_socket_with_user_and_password() -> None:
    info = parse_dsn("postgresql://u:S0cketPw@/shop?host=/tmp&port=5444")
    assert (info.host, info.port, info.password) == ("/tmp", "5444", "S0cketPw")
    assert info.display() == f"postgresql://u:{MASK}@/shop?host=/tmp&port=5444"


@pytest.mark.parametrize(
    ("dsn", "reason"),
    [
        ("postgresql://u:Hunter2pw@db.example.com:notaport/db", "Port could not be cast"),
        ("postgresql://u:Hunter2pw@db.example.com:99999/db", "Port out of range"),
        ("host=db.example.com port=abc user=u password=Hunter2pw", "the port 'abc'"),
        ("postgresql://u:Hunter2pw@db.example.com/db?port=0", "the port '0'"),
        ("postgresql://u:Hunter2pw@db.example.com/db?frobnicate=1", '"frobnicate"'),
        ("host=db.example.com password=Hunter2pw bogus=1", '"bogus"'),
        ("just some garbage", "not a postgresql:// URL nor key=value pairs"),
        ("mysql://u:Hunter2pw@db.example.com/db", "not a postgresql:// URL"),
        ("host=db.example.com password='Hunter2pw", "unterminated quoted string"),
        ("postgresql://u:Hunter2pw@[::1/db", "Invalid IPv6 URL"),
    ],
)
def test_malformed_dsn(dsn: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_dsn(dsn, "DATABASE_URL")
    text = str(caught.value)
    assert text.startswith("malformed connection string in DATABASE_URL: ")
    assert reason in text
    assert "Hunter2pw" not in text
    assert "\n" not in text
    assert "expected postgresql://USER:PASSWORD@HOST:5432/DATABASE" in text


@pytest.mark.parametrize("dsn", ["", "   ", "\n"])
def test_empty_dsn(dsn: str) -> None:
    with pytest.raises(ConfigError, match=r"^--dsn is empty"):
        parse_dsn(dsn)


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://u:Xq7@zK9@db.example.com/db",
        "postgresql://u:Xq7/zK9@db.example.com/db",
        "postgresql://u:Xq7?zK9@db.example.com/db",
        "postgresql://u:Xq7#zK9@db.example.com/db",
        "postgresql://u:123/zK9@db.example.com/db",
    ],
)
def test_password_with_unencoded_reserved_character(dsn: str) -> None:
    """The parsers would split such a URL inside the password and quote a piece of it."""
    with pytest.raises(ConfigError) as caught:
        parse_dsn(dsn)
    text = str(caught.value)
    assert "must be URL-encoded" in text
    for piece in ("Xq7", "zK9", "123"):
        assert piece not in text
    for piece in ("Xq7", "zK9"):
        assert piece not in mask_dsn(dsn)


def test_at_sign_in_query_is_fine() -> None:
    info = parse_dsn("postgresql://u:pw@h/db?application_name=me@laptop")
    assert info.params["application_name"] == "me@laptop"


def test_malformed_key_value_quotes_do_not_leak() -> None:
    """libpq has no '' escape: it ends the value early and quotes the rest in its message."""
    dsn = "host=h user=u password='it''s a s3cret' dbname=db"
    with pytest.raises(ConfigError) as caught:
        parse_dsn(dsn)
    assert "s3cret" not in str(caught.value)
    assert "'s" not in str(caught.value)
    assert mask_dsn(dsn) == f"host=h user=u password={MASK} dbname=db"


# -- masking ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dsn", "secrets"),
    [
        ("postgresql://u:Plain5ecret@h/db", ["Plain5ecret"]),
        ("postgresql://u:p%40ss%2Fw0rd%3F@h/db", ["p@ss/w0rd?", "p%40ss%2Fw0rd%3F", "w0rd"]),
        ("postgresql://u:sp%20ace%25d@h/db", ["sp ace%d", "sp%20ace%25d", "ace"]),
        ("postgresql://u@h/db?password=Qu3ryPw", ["Qu3ryPw"]),
        ("host=h user=u password=KvPlain9", ["KvPlain9"]),
        ("host=h user=u password='Kv Qu0ted' dbname=d", ["Kv Qu0ted", "Qu0ted"]),
        ("host=h user=u password='Kv \\'Esc4ped\\'' dbname=d", ["Esc4ped"]),
        ("host=h user=u password='Kv=Equ4ls sign' dbname=d", ["Equ4ls"]),
        (NEON_POOLED, ["N3onS3cret"]),
    ],
)
def test_password_never_shown(dsn: str, secrets: list[str]) -> None:
    info = parse_dsn(dsn)
    assert info.password is not None
    outputs = [*shown(info), mask_dsn(dsn), info.direct().display(), repr(info.direct())]
    for output in outputs:
        assert MASK in output
        for secret in secrets:
            assert secret not in output
    # the password is still there for libpq
    assert info.password in parse_dsn(info.conninfo()).params.values()


def test_display_without_password() -> None:
    info = parse_dsn("postgresql://u@h:5433/db?sslmode=require")
    assert info.display() == "postgresql://u@h:5433/db?sslmode=require"
    assert MASK not in info.display()


def test_with_params_keeps_masking() -> None:
    info = parse_dsn("postgresql://u:Orig1nal@h/db").with_params(dbname="other", password="N3wPw")
    assert info.dbname == "other"
    assert "N3wPw" not in info.display()
    assert "Orig1nal" not in info.display()


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://u:Unparsable7@h:port/db",
        "postgresql://u:Unparsable7@h/db?nope=1",
        "host=h password=Unparsable7 nope=1",
        "postgresql://u@h/db?password=Unparsable7&nope=1",
    ],
)
def test_mask_dsn_of_unparsable_dsn(dsn: str) -> None:
    masked = mask_dsn(dsn)
    assert "Unparsable7" not in masked
    assert MASK in masked


def test_scrub() -> None:
    text = (
        'FATAL: user "u" at postgresql://u:Uri5ecret@h/db, password=KvSecret9, '
        "?password=Qu3ry&x=1, plus the raw T0ken and its encoded form a%2Fb"
    )
    out = scrub(text, "T0ken", "a/b", None, "")
    for secret in ("Uri5ecret", "KvSecret9", "Qu3ry", "T0ken", "a%2Fb"):
        assert secret not in out
    assert out.startswith('FATAL: user "u" at postgresql://u:****@h/db, password=****')
    assert out.endswith("plus the raw **** and its encoded form ****")
    assert scrub("nothing to hide here") == "nothing to hide here"


# -- poolers and Neon ---------------------------------------------------------------------


def test_neon_pooler_host() -> None:
    info = parse_dsn(NEON_POOLED)
    assert info.pooled
    assert info.is_neon
    assert info.pooler_reason is not None
    assert "-pooler." in info.pooler_reason
    direct = info.direct()
    assert direct.host == "ep-cool-darkness-123456.us-east-2.aws.neon.tech"
    assert not direct.pooled
    assert direct.is_neon
    assert "pgbouncer" not in direct.app_params
    assert direct.app_params["schema"] == "app"
    assert direct.password == info.password
    assert direct.params["sslmode"] == "require"
    assert "derived from the pooler" in direct.source


def test_pgbouncer_flag_marks_a_pooler() -> None:
    info = parse_dsn("postgresql://u:pw@pgbouncer.internal:6432/db?pgbouncer=true")
    assert info.pooled
    assert not info.is_neon
    assert info.pooler_reason is not None
    assert "pgbouncer=true" in info.pooler_reason


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://u@ep-cool-darkness-123456.us-east-2.aws.neon.tech/db",
        "postgresql://u@localhost/db?pgbouncer=false",
        "postgresql://u@my-pooler-host.example.com/db",  # '-pooler' but not '-pooler.'
    ],
)
def test_not_pooled(dsn: str) -> None:
    info = parse_dsn(dsn)
    assert not info.pooled
    assert info.pooler_reason is None


@pytest.mark.parametrize(
    ("host", "neon"),
    [
        ("ep-x-123.eu-central-1.aws.neon.tech", True),
        ("ep-x-123-pooler.eu-central-1.aws.neon.tech", True),
        ("ep-x-123.neon.build", True),
        ("neon.tech.example.com", False),
        ("localhost", False),
    ],
)
def test_is_neon(host: str, neon: bool) -> None:
    assert parse_dsn(f"postgresql://u@{host}/db").is_neon is neon
