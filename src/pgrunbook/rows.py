"""Reading query rows into dataclasses (psycopg's class_row), and their JSON form."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from datetime import datetime
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg.rows import class_row

R = TypeVar("R")
Query = str | sql.SQL | sql.Composed


def fetch(
    conn: psycopg.Connection[Any],
    row: type[R],
    query: Query,
    params: Mapping[str, Any] | None = None,
) -> list[R]:
    cur = conn.cursor(row_factory=class_row(row))
    return cur.execute(query, params).fetchall()


def fetch_one(
    conn: psycopg.Connection[Any],
    row: type[R],
    query: Query,
    params: Mapping[str, Any] | None = None,
) -> R:
    found = fetch(conn, row, query, params)
    assert len(found) == 1, f"expected one row, got {len(found)}"
    return found[0]


def as_json(value: Any) -> Any:
    """A row (dataclass), list or dict with datetimes as ISO 8601 text."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: as_json(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [as_json(v) for v in value]
    if isinstance(value, dict):
        return {k: as_json(v) for k, v in value.items()}
    return value
