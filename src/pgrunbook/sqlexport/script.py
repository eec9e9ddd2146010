"""The pieces every exported script is made of: rendered SQL, comments, psql's ``\\echo``.

A renderer returns a ``Body``: the script's text after the header, and what the header says
about it (what it changes, how to undo it, whether psql may wrap it in a transaction).
``write.py`` adds the header. Values go into the SQL as literals rendered by psycopg
(``ClientCursor.mogrify`` of the same constants and parameters the commands run),
identifiers through ``psycopg.sql``; names only ever reach a comment or an ``\\echo``
through ``comment()`` and ``echo()``, which keep a name with a line break from ending the
comment.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import psycopg
from psycopg import sql

Query = str | sql.SQL | sql.Composed
Setting = Literal["statement_timeout", "lock_timeout"]

STOP_ON_ERROR: Final = "\\set ON_ERROR_STOP on"
SET_LOCAL_SQL: Final = sql.SQL("SET LOCAL {} = {};")
SET_SQL: Final = sql.SQL("SET {} = {};")
# psql reads a backslash command to the end of the line: no control character may reach one.
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")


@dataclass(frozen=True)
class Body:
    """A script's text (after the header) and what its header says about it."""

    title: str  # "runbook step 1: discovery (read only)"
    changes: str  # what running it changes
    undo: str  # how to undo that
    text: str
    # why psql must not wrap it in one transaction (-1, BEGIN); empty: it may
    no_transaction: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)  # more header lines


def render(
    conn: psycopg.Connection[Any], query: Query, params: Mapping[str, Any] | None = None
) -> str:
    """``query`` as psql should run it, as psycopg sends it when a command runs it.

    With ``params`` (a query written with ``%(name)s`` placeholders, where ``%%`` is a
    literal ``%``) they are rendered as literals by psycopg's client-side binding; without,
    the text is taken as it is (a name or literal composed in may hold a ``%``).
    """
    if params is None:
        text = query if isinstance(query, str) else query.as_string(conn)
    else:
        text = psycopg.ClientCursor(conn).mogrify(query, params)
    return text.strip()


def statement(
    conn: psycopg.Connection[Any], query: Query, params: Mapping[str, Any] | None = None
) -> str:
    """``render()`` ended with a semicolon."""
    return render(conn, query, params) + ";"


def comment(text: str) -> str:
    """``text`` as SQL comment lines (a line break in a name cannot end the comment)."""
    lines = text.splitlines() or [""]
    return "\n".join(f"-- {line}".rstrip() for line in lines)


def echo(text: str) -> str:
    """psql's ``\\echo`` of ``text``, quoted for psql (control characters replaced)."""
    clean = _CONTROL.sub("?", text).replace("\\", "\\\\").replace("'", "''")
    return f"\\echo '{clean}'"


def set_local(conn: psycopg.Connection[Any], setting: Setting, value: str) -> str:
    """``SET LOCAL setting = 'value';`` (for the script's own transaction)."""
    return SET_LOCAL_SQL.format(sql.SQL(setting), sql.Literal(value)).as_string(conn)


def set_session(conn: psycopg.Connection[Any], setting: Setting, value: str) -> str:
    """``SET setting = 'value';`` (for the rest of the psql session)."""
    return SET_SQL.format(sql.SQL(setting), sql.Literal(value)).as_string(conn)


def section(title: str, *parts: str) -> str:
    """A titled part of a script: a comment and an ``\\echo`` of the title, then ``parts``."""
    return "\n".join((comment(title), echo(title), *parts))


def join(*blocks: str) -> str:
    """Blocks separated by one blank line, ending with a newline."""
    return "\n\n".join(b.strip("\n") for b in blocks if b.strip()) + "\n"
