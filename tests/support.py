"""Helpers shared by the tests (fixtures live in conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
from psycopg import sql

from pgrunbook.connect import RetryPolicy, connect
from pgrunbook.dsn import ConnInfo
from pgrunbook.embedded import LocalServer

TEST_SEED = 42
# A fixed anchor keeps the template's data identical from run to run.
TEST_ANCHOR = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
FAST_RETRY = RetryPolicy(attempts=1, connect_timeout=5)


@dataclass
class PgServer:
    """A running server the tests may do anything to."""

    admin: ConnInfo  # a superuser on the maintenance database
    major: int
    local: LocalServer | None = None

    def dsn(self, dbname: str, **changes: str) -> ConnInfo:
        return self.admin.with_params(dbname=dbname, **changes)

    def execute(self, query: sql.Composable | str, params: tuple[object, ...] = ()) -> None:
        with connect(self.admin, autocommit=True, retry=FAST_RETRY) as conn:
            conn.execute(query if isinstance(query, sql.Composable) else sql.SQL(query), params)  # type: ignore[arg-type]

    def create_database(self, name: str, template: str | None = None) -> ConnInfo:
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            query += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        self.execute(query)
        return self.dsn(name)

    def drop_database(self, name: str) -> None:
        self.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def scalar(info: ConnInfo, query: str | sql.Composable, params: tuple[object, ...] = ()) -> object:
    """Run one query and return the first column of its first row."""
    with psycopg.connect(info.conninfo(), autocommit=True) as conn:
        row = conn.execute(
            query if isinstance(query, sql.Composable) else sql.SQL(query), params
        ).fetchone()  # type: ignore[arg-type]
        return None if row is None else row[0]
