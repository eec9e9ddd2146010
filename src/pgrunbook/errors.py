"""Errors that pgrunbook reports to users as one line with an exit code."""

from __future__ import annotations


class PgRunbookError(Exception):
    """An error the user can fix. ``str()`` is one line: what is wrong and how to fix it."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(self.one_line())

    def one_line(self) -> str:
        text = self.message if not self.hint else f"{self.message}; {self.hint}"
        return " ".join(text.split())


class ConfigError(PgRunbookError):
    """Bad configuration: a malformed DSN, a missing setting, a broken config file."""


class ConnectError(PgRunbookError):
    """The server could not be reached or refused us."""


class EmbeddedServerError(PgRunbookError):
    """The embedded PostgreSQL server could not be started or stopped."""


class TargetNotEmptyError(PgRunbookError):
    """A command that creates a schema found one already there."""
