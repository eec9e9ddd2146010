"""The ``.env`` lines for the application roles: written with mode 0600 from the start.

``write_env_file`` holds the generated passwords inside ready-to-use URLs for the app's own
endpoint (the pooled one when the app's URL is pooled), with the app URL's parameters
(``sslmode``, Prisma's ``connection_limit``...). Nothing here logs or prints a URL.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Final
from urllib.parse import quote, urlencode

from pgrunbook.change.steps.roles.spec import RoleGrants, role_grants
from pgrunbook.dsn import ConnInfo, parse_dsn
from pgrunbook.errors import ConfigError
from pgrunbook.profile.model import RolesSpec

FILE_MODE: Final = 0o600
# connection parameters that go in the URL's authority and path, not its query
_AUTHORITY: Final = frozenset({"user", "password", "host", "port", "dbname"})


def _netloc(app: ConnInfo) -> tuple[str, dict[str, str]]:
    """``host:port[,host:port]`` and the parameters that must go in the query instead."""
    host = app.params.get("host", "")
    port = app.params.get("port", "")
    if not host or host.startswith("/"):  # a Unix socket directory: libpq takes it as ?host=
        extra = {k: v for k, v in (("host", host), ("port", port)) if v}
        return "", extra
    hosts = host.split(",")
    ports = port.split(",") if port else []
    if len(ports) == 1:
        ports = ports * len(hosts)
    parts = []
    for i, name in enumerate(hosts):
        text = f"[{name}]" if ":" in name else name
        if i < len(ports) and ports[i]:
            text += f":{ports[i]}"
        parts.append(text)
    return ",".join(parts), {}


def role_url(app: ConnInfo, role: str, password: str) -> str:
    """``postgresql://role:password@<app host>:<port>/<db>?<the app URL's parameters>``."""
    netloc, extra = _netloc(app)
    query = {**extra}
    query.update({k: v for k, v in app.params.items() if k not in _AUTHORITY})
    query.update(app.app_params)
    auth = f"{quote(role, safe='')}:{quote(password, safe='')}@"
    url = f"postgresql://{auth}{netloc}/{quote(app.dbname, safe='')}"
    if query:
        url += "?" + urlencode(query, safe="/,")
    return url


def _header(app: ConnInfo, grants: tuple[RoleGrants, ...]) -> list[str]:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"# Written by pgrunbook (step roles) on {when} for database {app.dbname}.",
        "# It holds login passwords: keep it secret (mode 0600), never commit it.",
        "# Copy the lines into the app's .env. DATABASE_URL logs in as the app role the runbook",
        "# tells the app to use instead of the owner; keep DIRECT_URL (migrations) on the owner:",
        "# the default privileges give the app roles what the owner creates later.",
    ]
    lines += [f"#   {g.env_name}: {g.role} ({g.summary})" for g in grants]
    return lines


def write_env_file(path: Path, app: ConnInfo, passwords: dict[str, str], roles: RolesSpec) -> None:
    """Write ``DATABASE_URL`` (app_user), ``APP_READONLY_DATABASE_URL`` and
    ``APP_ADMIN_DATABASE_URL`` for the roles in ``passwords``, in a file created with mode
    0600 (an existing file is truncated and its mode set to 0600 before anything is written).
    """
    grants = tuple(g for g in role_grants(roles, 0) if g.role in passwords)
    lines = [*_header(app, grants), ""]
    lines += [f'{g.env_name}="{role_url(app, g.role, passwords[g.role])}"' for g in grants]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)  # the file may have existed with a wider mode
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            fd = -1
            out.write("\n".join(lines) + "\n")
    finally:
        if fd >= 0:
            os.close(fd)


def read_env_file(path: Path, roles: RolesSpec) -> dict[str, str]:
    """The passwords (role -> password) of the roles whose URL is in ``path``.

    Reads ``NAME="postgresql://..."`` lines (any name; quotes optional); a URL for another
    user, or one that does not parse, is ignored. Raises OSError when the file is unreadable.
    """
    wanted = set(roles.names())
    out: dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        value = line.split("=", 1)[1].strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        if not value.startswith(("postgresql://", "postgres://")):
            continue
        try:
            info = parse_dsn(value, str(path))
        except ConfigError:
            continue
        if info.user in wanted and info.password:
            out[info.user] = info.password
    return out
