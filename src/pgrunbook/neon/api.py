"""One Neon API request: Bearer auth, timeouts, retries of 423 and 429, one-line errors.

No well-kept Python client covers branch restore, operation polling and the API's status
codes, so this is a small one on httpx. The API key lives only in the Authorization header
of the httpx client; nothing here logs, prints or formats it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any, Final
from urllib.parse import urlsplit

import httpx

from pgrunbook import __version__
from pgrunbook.dsn import scrub
from pgrunbook.neon.errors import NeonApiError, NeonError
from pgrunbook.neon.settings import NeonSettings

# 423: the project is locked by another operation; 429: rate limited. Neither was applied.
RETRY_ALWAYS: Final = frozenset({423, 429})
# Server trouble: retried only for GET, which changes nothing.
RETRY_GET: Final = frozenset({502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff for 423 / 429 (and 5xx or a lost connection on GET).

    The wait is ``Retry-After`` when the API sends one, else ``base_delay * 2**n`` capped at
    ``max_delay``; never less than ``min_delay``. ``total`` bounds all waiting of one request.
    """

    attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 20.0
    min_delay: float = 0.1
    total: float = 120.0
    timeout: float = 30.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is None:
            retry_after = min(self.base_delay * 2**attempt, self.max_delay)
        return max(self.min_delay, retry_after)


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds: a number (fractions accepted) or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _error_fields(response: httpx.Response) -> tuple[str, str]:
    try:
        body = response.json()
    except ValueError:
        return "", " ".join(response.text.split())[:200]
    if isinstance(body, Mapping):
        return str(body.get("code") or ""), " ".join(str(body.get("message") or "").split())
    return "", ""


class NeonApi:
    """Requests against ``settings.base_url``; use as a context manager (closes the pool)."""

    def __init__(
        self,
        settings: NeonSettings,
        retry: RetryPolicy | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
        on_retry: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        self._on_retry = on_retry
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._host = urlsplit(settings.base_url).netloc
        self._http = httpx.Client(
            base_url=settings.base_url,
            headers={
                "Authorization": f"Bearer {settings.api_key}",
                "Accept": "application/json",
                "User-Agent": f"pgrunbook/{__version__}",
            },
            timeout=httpx.Timeout(self.retry.timeout, connect=10.0),
            transport=transport,
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"NeonApi(project_id={self.settings.project_id!r}, base_url={self._host!r})"

    def __enter__(self) -> NeonApi:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _fail(self, text: str, hint: str | None = None) -> NeonError:
        return NeonError(scrub(text, self.settings.api_key), hint)

    def request(
        self, method: str, path: str, *, json: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The JSON body of a 2xx answer; retries as ``self.retry`` says, else raises."""
        policy = self.retry
        waited = 0.0
        attempt = 0
        while True:
            response, problem = self._send(method, path, json)
            if response is not None and response.status_code < 400:
                return self._body(response, method, path)
            status = None if response is None else response.status_code
            retryable = status in RETRY_ALWAYS or (
                method == "GET" and (status is None or status in RETRY_GET)
            )
            retry_after = None if response is None else response.headers.get("Retry-After")
            delay = policy.delay(attempt, retry_after_seconds(retry_after))
            attempt += 1
            gave_up = retryable and (attempt >= policy.attempts or waited + delay > policy.total)
            note = f"still after {attempt} attempts, {waited:.1f} s of waiting" if gave_up else ""
            if response is None and (gave_up or not retryable):
                hint = "check the network and NEON_API_URL"
                if method != "GET" and not problem.startswith("cannot reach"):
                    hint = "it may have been applied: check pgrunbook branch list; " + hint
                raise self._fail(f"{problem} ({note})" if note else problem, hint)
            if response is not None and (gave_up or not retryable):
                code, message = _error_fields(response)
                key = self.settings.api_key
                raise NeonApiError(
                    response.status_code, method, path, code, scrub(message, key), note
                )
            if self._on_retry is not None:
                why = f"HTTP {status}" if status is not None else problem
                self._on_retry(f"Neon API {method} {path}: {why}, retrying in {delay:.1f} s")
            self._sleep(delay)
            waited += delay

    def _send(
        self, method: str, path: str, json: Mapping[str, Any] | None
    ) -> tuple[httpx.Response | None, str]:
        """The answer, or None and what went wrong on the way."""
        try:
            return self._http.request(method, path, json=json), ""
        except httpx.TimeoutException:
            return None, f"Neon API {method} {path}: no answer within {self.retry.timeout:g} s"
        except httpx.ConnectError as exc:  # nothing was sent
            return None, f"cannot reach the Neon API at {self._host}: {exc}"
        except httpx.TransportError as exc:
            return None, f"Neon API {method} {path}: the connection failed: {exc}"

    def _body(self, response: httpx.Response, method: str, path: str) -> dict[str, Any]:
        if not response.content:
            return {}
        try:
            body = response.json()
        except ValueError:
            raise self._fail(f"Neon API {method} {path}: the answer is not JSON") from None
        if not isinstance(body, dict):
            raise self._fail(f"Neon API {method} {path}: unexpected answer {type(body).__name__}")
        return body
