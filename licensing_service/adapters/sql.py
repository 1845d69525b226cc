"""The part of a DB-API connection the repositories use, so that the same
repository classes (``sqlite_*.py``) run on SQLite's connection and, through
``pg_connection.PgConnection``, on PostgreSQL's: one copy of every query.

The SQL is written in the subset both speak: ``?`` and ``:name`` parameters
(translated for psycopg), ``ON CONFLICT``, ``RETURNING``, no SQLite-only
functions, and every timestamp bound from the injected clock."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Protocol


class Rows(Protocol):
    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Sql(Protocol):
    def execute(self, sql: str, parameters: Any = ..., /) -> Rows: ...
    def executemany(self, sql: str, parameters: Iterable[Any], /) -> Rows: ...
