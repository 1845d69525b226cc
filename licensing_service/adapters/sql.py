"""The part of a DB-API connection the repositories use, so that the same
repository classes (``sqlite_*.py``) run on SQLite's connection and, through
``pg_connection.PgConnection``, on PostgreSQL's: one copy of every query.

The SQL is written in the subset both speak: ``?`` and ``:name`` parameters
(translated for psycopg), ``ON CONFLICT``, ``RETURNING``, no SQLite-only
functions, and every timestamp bound from the injected clock."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, Literal, Protocol

from licensing_service.service.customer_view import CustomerView
from licensing_service.service.errors import StorageUnavailable


class Rows(Protocol):
    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Sql(Protocol):
    def execute(self, sql: str, parameters: Any = ..., /) -> Rows: ...
    def executemany(self, sql: str, parameters: Iterable[Any], /) -> Rows: ...


class Savepoint:
    """SAVEPOINT ... RELEASE inside a unit's transaction, on either database; on
    an error ROLLBACK TO (PostgreSQL refuses every later statement of a
    transaction with a failed one until then), and the customer view drops the
    rows the unit wrote (the transaction's others too: a cache miss is cheap).
    ``mapped`` turns the driver's error into ours (None: not the driver's)."""

    __slots__ = ("_c", "_driver_error", "_mapped", "_view")

    def __init__(
        self,
        sql: Sql,
        view: CustomerView,
        driver_error: type[BaseException],
        mapped: Callable[[BaseException], BaseException | None],
    ) -> None:
        self._c = sql
        self._view = view
        self._driver_error = driver_error
        self._mapped = mapped

    def __enter__(self) -> None:
        try:
            self._c.execute("SAVEPOINT unit")
        except self._driver_error as exc:
            raise StorageUnavailable(str(exc)) from exc

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> Literal[False]:
        try:
            if kind is None:
                self._c.execute("RELEASE SAVEPOINT unit")
                return False
            self._c.execute("ROLLBACK TO SAVEPOINT unit")
            self._c.execute("RELEASE SAVEPOINT unit")
        except self._driver_error as exc:
            raise StorageUnavailable(str(exc)) from exc
        finally:
            if kind is not None:
                self._view.rolled_back_to_savepoint()
        mapped = self._mapped(error) if error is not None else None
        if mapped is not None:
            raise mapped from error
        return False
