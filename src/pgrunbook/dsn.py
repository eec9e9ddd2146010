"""Connection strings: parsing, Prisma's extra parameters, Neon's pooler, and masking.

``display()`` (and ``mask_dsn``) is the only way a DSN is ever shown; it never shows a password.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Final
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pgrunbook.errors import ConfigError

MASK: Final = "****"

# Query parameters Prisma (and other app drivers) put in DATABASE_URL that libpq rejects.
# They describe the app's pool, not the server, so pgrunbook keeps them aside.
APP_ONLY_PARAMS: Final = frozenset(
    {
        "schema",
        "connection_limit",
        "pool_timeout",
        "pgbouncer",
        "statement_cache_size",
        "socket_timeout",
        "sslaccept",
        "sslidentity",
        "sslpassword",
        "connect_timeout_ms",
        "single_use_connections",
    }
)

_URI_PASSWORD = re.compile(r"(?P<head>://[^/@:?#]*:)(?P<pw>[^@/?#]*)(?P<tail>@)")
# A quoted key=value password ends at a quote followed by the next ``key=`` or the end, so a
# malformed one ('it''s') is masked whole; an unterminated one masks the rest of the line.
_KV_PASSWORD = re.compile(
    r"(?P<head>\bpassword\s*=\s*)"
    r"(?P<pw>'(?:\\.|[^\\])*?'(?=\s+\w+\s*=|\s*$)|'[^\n]*|\S+)",
    re.I,
)
# In a URL that does not parse, everything from ``user:`` to the last ``@`` may be password.
_URI_PASSWORD_LOOSE = re.compile(r"(?P<head>://[^/@:?#\s]*:)(?P<pw>\S*)(?P<tail>@)")
_QUOTED_TOKEN = re.compile(r'"(?P<token>[^"]+)"')
_QUERY_PASSWORD = re.compile(r"(?P<head>[?&]password=)(?P<pw>[^&#\s]*)", re.I)

EXAMPLE: Final = "postgresql://USER:PASSWORD@HOST:5432/DATABASE?sslmode=require"


def scrub(text: str, *secrets: str | None) -> str:
    """Remove anything that looks like a password from free text (e.g. a libpq message)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
            text = text.replace(quote(secret, safe=""), MASK)
    text = _URI_PASSWORD.sub(lambda m: f"{m['head']}{MASK}{m['tail']}", text)
    text = _KV_PASSWORD.sub(lambda m: f"{m['head']}{MASK}", text)
    return _QUERY_PASSWORD.sub(lambda m: f"{m['head']}{MASK}", text)


def _is_uri(dsn: str) -> bool:
    return dsn.startswith(("postgresql://", "postgres://"))


def _raw_password(dsn: str) -> str | None:
    for pattern in (_URI_PASSWORD, _QUERY_PASSWORD, _KV_PASSWORD):
        match = pattern.search(dsn)
        if match:
            return unquote(match["pw"].strip("'"))
    return None


@dataclass(frozen=True, repr=False)
class ConnInfo:
    """A parsed connection target. ``params`` are libpq keywords (they may hold a password)."""

    params: dict[str, str]
    app_params: dict[str, str] = field(default_factory=dict)
    source: str = "--dsn"

    def __repr__(self) -> str:
        return f"ConnInfo({self.display()!r}, source={self.source!r})"

    __str__ = __repr__

    @property
    def host(self) -> str:
        return self.params.get("host", "") or self.params.get("hostaddr", "") or "localhost"

    @property
    def port(self) -> str:
        return self.params.get("port", "") or "5432"

    @property
    def dbname(self) -> str:
        return self.params.get("dbname", "") or self.params.get("user", "")

    @property
    def user(self) -> str:
        return self.params.get("user", "")

    @property
    def password(self) -> str | None:
        return self.params.get("password")

    @property
    def schema(self) -> str:
        """Prisma's ``?schema=`` parameter, the schema the app's tables live in."""
        return self.app_params.get("schema", "public")

    @property
    def pooled(self) -> bool:
        return bool(self.pooler_reason)

    @property
    def pooler_reason(self) -> str | None:
        hosts = self.host.split(",")
        if any("-pooler." in h for h in hosts):
            return "host contains '-pooler.' (a Neon PgBouncer endpoint in transaction mode)"
        if self.app_params.get("pgbouncer", "").lower() == "true":
            return "the URL carries pgbouncer=true (Prisma's flag for PgBouncer)"
        return None

    @property
    def is_neon(self) -> bool:
        return any(h.endswith((".neon.tech", ".neon.build")) for h in self.host.split(","))

    def conninfo(self) -> str:
        """The libpq connection string, password included. Never print it."""
        return make_conninfo(**self.params)

    def display(self) -> str:
        """The DSN as a URL with the password masked: the only way a DSN is shown."""
        params = dict(self.params)
        user = params.pop("user", "")
        password = params.pop("password", None)
        host = params.pop("host", "")
        port = params.pop("port", "")
        dbname = params.pop("dbname", "")
        auth = quote(user, safe="")
        if password is not None:
            auth += f":{MASK}"
        if auth:
            auth += "@"
        netloc = host if host and not host.startswith("/") else ""
        if netloc and ":" in netloc and "," not in netloc:
            netloc = f"[{netloc}]"
        if port and netloc:
            netloc += f":{port}"
        query = dict(params)
        if host and host.startswith("/"):
            query = {"host": host, **query}
            if port:
                query["port"] = port
        query.update({k: v for k, v in self.app_params.items() if k not in ("password",)})
        query.pop("sslpassword", None)
        text = f"postgresql://{auth}{netloc}/{quote(dbname, safe='')}"
        if query:
            text += "?" + urlencode(query, safe="/,")
        return text

    def with_params(self, **changes: str) -> ConnInfo:
        return replace(self, params={**self.params, **changes})

    def direct(self) -> ConnInfo:
        """The direct (non-pooled) endpoint of a Neon pooled DSN."""
        hosts = [h.replace("-pooler.", ".") for h in self.host.split(",")]
        app_params = {k: v for k, v in self.app_params.items() if k != "pgbouncer"}
        return replace(
            self,
            params={**self.params, "host": ",".join(hosts)},
            app_params=app_params,
            source=f"{self.source} (direct host derived from the pooler)",
        )


def parse_dsn(dsn: str, source: str = "--dsn") -> ConnInfo:
    """Parse a URL or key=value DSN; raise ConfigError (one line, no password) when malformed."""
    text = dsn.strip()
    if not text:
        raise ConfigError(f"{source} is empty", f"expected {EXAMPLE}")
    secret = _raw_password(text)
    loose = _URI_PASSWORD_LOOSE.search(text)
    secrets = (secret, loose["pw"] if loose else None)
    app_params: dict[str, str] = {}
    # A password with a raw '@', '/', '?' or '#' splits the URL in the wrong place: the
    # parsers' messages would then quote a piece of it, so say what is wrong without them.
    suspect = False
    if _is_uri(text):
        try:
            parts = urlsplit(text)
            authority = parts.netloc
            rest = text.split("://", 1)[1][len(authority) :]
            suspect = "@" not in authority and "@" in rest
            if authority.count("@") > 1 or ("@" not in authority and "@" in parts.path):
                raise _unencoded_error(source)
            parts.port  # noqa: B018  (validates the port)
        except ValueError as exc:
            if suspect:
                raise _unencoded_error(source) from None
            raise ConfigError(
                f"malformed connection string in {source}: {scrub(str(exc), *secrets)}",
                f"expected {EXAMPLE}",
            ) from None
        query = parse_qsl(parts.query, keep_blank_values=True)
        kept = [(k, v) for k, v in query if k not in APP_ONLY_PARAMS]
        app_params = {k: v for k, v in query if k in APP_ONLY_PARAMS}
        # Not geturl(): it drops the empty authority of postgresql:///db?host=/socket/dir.
        text = f"{parts.scheme}://{authority}{parts.path}"
        if kept:
            text += "?" + urlencode(kept, safe="/,")
        if parts.fragment:
            text += "#" + parts.fragment
    elif "=" not in text:
        raise ConfigError(
            f"malformed connection string in {source}: not a postgresql:// URL nor key=value pairs",
            f"expected {EXAMPLE}",
        )
    try:
        params = {k: str(v) for k, v in conninfo_to_dict(text).items() if v is not None}
    except psycopg.ProgrammingError as exc:
        if suspect:
            raise _unencoded_error(source) from None
        reason = _mask_tokens(scrub(str(exc).strip().splitlines()[0], *secrets), secret)
        raise ConfigError(
            f"malformed connection string in {source}: {reason}", f"expected {EXAMPLE}"
        ) from None
    for port in params.get("port", "").split(","):
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            raise ConfigError(
                f"malformed connection string in {source}: the port {port!r} is not a number "
                "between 1 and 65535",
                f"expected {EXAMPLE}",
            )
    return ConnInfo(params=params, app_params=app_params, source=source)


def _unencoded_error(source: str) -> ConfigError:
    return ConfigError(
        f"malformed connection string in {source}: the user name or password seems to hold "
        "a character that must be URL-encoded",
        "encode it: @ as %40, / as %2F, ? as %3F, # as %23, % as %25, space as %20",
    )


def _mask_tokens(message: str, secret: str | None) -> str:
    """Mask the quoted tokens of a libpq message that are pieces of the password."""
    if not secret:
        return message
    return _QUOTED_TOKEN.sub(lambda m: f'"{MASK}"' if m["token"] in secret else m.group(0), message)


def mask_dsn(dsn: str) -> str:
    """Mask the password of a raw DSN string, even one that does not parse."""
    try:
        return parse_dsn(dsn).display()
    except ConfigError:
        if _is_uri(dsn.strip()):
            dsn = _URI_PASSWORD_LOOSE.sub(lambda m: f"{m['head']}{MASK}{m['tail']}", dsn)
        return scrub(dsn)
