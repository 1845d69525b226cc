"""The repositories' ``Sql`` on a psycopg connection.

One object per store, bound to the pool connection of the current unit of
work (``bind``/``unbind``); the connection is taken from the pool lazily, at
the first statement, so a validation answered from the customer view never
touches the pool. Parameters in the shared queries are SQLite style (``?``
and ``:name``); each query is translated once to psycopg's and cached.
Every statement runs under the store's client-side deadline (``pg_deadline``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import psycopg

from licensing_service.adapters.pg_deadline import DeadlineExceeded, Watchdog
from licensing_service.adapters.sql import Rows

PgConn = psycopg.Connection[tuple[Any, ...]]
T = TypeVar("T")

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
    __slots__ = ("_acquire", "_queries", "conn", "watchdog")

    def __init__(self, acquire: Callable[[], PgConn], watchdog: Watchdog) -> None:
        self._acquire = acquire
        self._queries: dict[str, bytes] = {}
        self.conn: PgConn | None = None
        self.watchdog = watchdog

    def run(self, conn: PgConn, query: bytes) -> None:
        """One statement without parameters or rows (BEGIN, COMMIT...)."""
        self._guarded(conn, conn.execute, query)

    def _guarded(self, conn: PgConn, call: Callable[..., T], *args: Any) -> T:
        """``call(*args)`` on ``conn`` under the store's client-side deadline."""
        watchdog = self.watchdog
        watchdog.arm(conn)
        try:
            return call(*args)
        except psycopg.Error as exc:
            if watchdog.expired(conn):
                raise DeadlineExceeded(
                    f"no answer from PostgreSQL within {watchdog.seconds:g} s (client deadline)"
                ) from exc
            raise
        finally:
            watchdog.disarm()

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
        conn = self.connection()
        if not parameters:  # psycopg leaves a query without parameters as it is (no %%)
            return self._guarded(conn, conn.execute, sql.encode())
        return self._guarded(conn, conn.execute, self._query(sql), parameters)

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> Rows:
        conn = self.connection()
        cursor = conn.cursor()
        batch = list(parameters)
        if batch:
            self._guarded(conn, cursor.executemany, self._query(sql), batch)
        return cursor
