"""Where the Neon API is and who we are: ``NEON_API_KEY``, the project, the base URL."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from pgrunbook.config import load_config
from pgrunbook.errors import ConfigError

DEFAULT_API_URL: Final = "https://console.neon.tech/api/v2"
KEY_VARIABLE: Final = "NEON_API_KEY"
PROJECT_VARIABLE: Final = "NEON_PROJECT_ID"
URL_VARIABLE: Final = "NEON_API_URL"


@dataclass(frozen=True)
class NeonSettings:
    """The API key is kept out of ``repr`` (and so out of tracebacks and logs)."""

    project_id: str
    api_key: str = field(repr=False)
    base_url: str = DEFAULT_API_URL

    @classmethod
    def from_env(
        cls,
        project: str | None = None,
        env: Mapping[str, str] | None = None,
        configured: str | None = None,
    ) -> NeonSettings:
        """``project`` (``--project``) wins over ``NEON_PROJECT_ID``, which wins over
        ``configured`` (``[neon] project_id`` in pgrunbook.toml, read when not given); the
        key must be set."""
        env = os.environ if env is None else env
        if configured is None and not (project or env.get(PROJECT_VARIABLE, "").strip()):
            configured = load_config().neon_project_id
        key = env.get(KEY_VARIABLE, "").strip()
        if not key:
            raise ConfigError(
                f"{KEY_VARIABLE} is not set",
                "create an API key in the Neon console (Account settings, API keys) and "
                f"export {KEY_VARIABLE}",
            )
        project_id = (project or env.get(PROJECT_VARIABLE, "") or configured or "").strip()
        if not project_id:
            raise ConfigError(
                "no Neon project id",
                f"pass --project ID, set {PROJECT_VARIABLE}, or write [neon] project_id in "
                "pgrunbook.toml (Neon console: Settings, General)",
            )
        base_url = (env.get(URL_VARIABLE) or DEFAULT_API_URL).strip().rstrip("/")
        if not base_url.startswith(("https://", "http://")):
            raise ConfigError(f"{URL_VARIABLE} is not an http(s) URL: {base_url}")
        return cls(project_id=project_id, api_key=key, base_url=base_url)
