"""The repositories' ``Sql`` on a psycopg connection.

One object per store, bound to the pool connection of the current unit of
work (``bind``/``unbind``); the connection is taken from the pool lazily, at
the first statement, so a validation answered from the customer view never
touches the pool. Parameters in the shared queries are SQLite style (``?``
and ``:name``); each query is translated once to psycopg's and cached.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

import psycopg

from licensing_service.adapters.sql import Rows

PgConn = psycopg.Connection[tuple[Any, ...]]

_PLACEHOLDER = re.compile(r"\?|(?<!:):([A-Za-z_][A-Za-z0-9_]*)|%")


def translate(sql: str) -> bytes:
    """``?`` -> ``%s``, ``:name`` -> ``%(name)s``, a literal ``%`` -> ``%%``.
    The shared queries quote no ``?`` or ``:`` inside string literals."""

    def one(match: re.Match[str]) -> str:
        text = match[0]
        if text == "?":
            return "%s"
        if text == "%":
            return "%%"
        return f"%({match[1]})s"

    return _PLACEHOLDER.sub(one, sql).encode()


class PgConnection:
    __slots__ = ("_acquire", "_queries", "conn")

    def __init__(self, acquire: Callable[[], PgConn]) -> None:
        self._acquire = acquire
        self._queries: dict[str, bytes] = {}
        self.conn: PgConn | None = None

    def connection(self) -> PgConn:
        conn = self.conn
        if conn is None:
            conn = self.conn = self._acquire()
        return conn

    def _query(self, sql: str) -> bytes:
        query = self._queries.get(sql)
        if query is None:
            query = self._queries[sql] = translate(sql)
        return query

    def execute(self, sql: str, parameters: Any = None, /) -> Rows:
        if not parameters:  # psycopg leaves a query without parameters as it is (no %%)
            return self.connection().execute(sql.encode())
        return self.connection().execute(self._query(sql), parameters)

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> Rows:
        cursor = self.connection().cursor()
        batch = list(parameters)
        if batch:
            cursor.executemany(self._query(sql), batch)
        return cursor
