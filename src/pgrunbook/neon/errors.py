"""Neon API failures, each one line (the API's own ``message`` when it sent one)."""

from __future__ import annotations

from typing import Final

from pgrunbook.errors import PgRunbookError

_HINTS: Final = {
    400: "the request was refused as it stands",
    401: "check NEON_API_KEY (Neon console: Account settings, API keys)",
    403: "the API key has no access to this project; check --project / NEON_PROJECT_ID",
    404: "check the project id (--project / NEON_PROJECT_ID) and the branch name "
    "(pgrunbook branch list)",
    409: "another change conflicts; look at the project in the Neon console",
    423: "the project is busy with another operation; try again in a minute",
    429: "Neon's rate limit (about 700 requests a minute); try again in a minute",
}


class NeonError(PgRunbookError):
    """The Neon API could not do what was asked (exit code 2)."""


class NeonApiError(NeonError):
    """The API answered with an error status."""

    def __init__(
        self, status: int, method: str, path: str, code: str, message: str, note: str = ""
    ) -> None:
        self.status, self.code, self.api_message = status, code, message
        what = f"Neon API {method} {path}: HTTP {status}"
        if message:
            what += f": {message}"
        if code:
            what += f" (code {code})"
        if note:
            what += f" ({note})"
        hint = _HINTS.get(status)
        if hint is None and status >= 500:
            hint = "Neon had a server error; try again later or see https://neonstatus.com"
        super().__init__(what, hint)


class OperationFailedError(NeonError):
    """An operation the API started ended in ``failed`` / ``error`` / ``cancelled``."""
