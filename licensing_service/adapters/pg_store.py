"""PostgreSQL storage: a psycopg 3 connection pool behind the same ports as
SQLite, with the shared repositories (``pg_repositories``) on it.

Sync on purpose, like the ports: psycopg 3's blocking API runs each unit of
work's statements on the calling thread (README, "PostgreSQL": measured
against asyncpg). Connections come from a ``psycopg_pool.ConnectionPool``,
which replaces a broken one in the background after a server restart; the
unit of work takes one lazily at its first statement.

Failures, for the breaker: a lost or refused connection, a pool timeout, a
statement or lock timeout (``statement_timeout`` and ``lock_timeout`` are set
to the settings' ``db_timeout_ms`` on every connection), a deadlock, a call
unanswered within the client-side deadline (a silent network: ``pg_deadline``,
``db_timeout_ms`` + ``DEADLINE_MARGIN_SECONDS``): all StorageUnavailable.
A refused constraint: ConstraintViolation. Never a 500.

Cache coherence across replicas: see ``CACHE_BOUND_SECONDS``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from time import monotonic
from types import TracebackType
from typing import Literal

import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import ConnectionPool, PoolTimeout

from licensing_service.adapters import license_feed
from licensing_service.adapters.pg_connection import PgConn, PgConnection
from licensing_service.adapters.pg_deadline import DEADLINE_MARGIN_SECONDS, Watchdog
from licensing_service.adapters.pg_repositories import PgBilling, PgOutbox, PgSessions
from licensing_service.adapters.sql import Savepoint
from licensing_service.adapters.sqlite_audit import SqliteAudit
from licensing_service.adapters.sqlite_licenses import SqliteLicenses
from licensing_service.adapters.sqlite_rate_limits import SqliteRateLimits
from licensing_service.service.customer_view import CustomerView
from licensing_service.service.errors import ConstraintViolation, StorageUnavailable
from licensing_service.service.faults import DbFaults

log = logging.getLogger(__name__)

# THE INVALIDATION BOUND. A replica's customer view (fresh rows and
# last-known-good records, service/customer_view.py) sees a license change
# committed by another replica at its first unit of work that starts at least
# this long after its last look at the ``license_changes`` feed (one indexed
# read: "anything after my cursor?"): a suspension reaches every replica's
# validations within 50 ms of its commit (plus the time the next request
# takes to arrive). Why a polled feed and not LISTEN/NOTIFY:
# notifications need a connection held out of the pool and a reader beside the
# synchronous hot path, and are lost while that connection is down (after a
# restart every cache would have to be dropped blind); the feed is read in the
# unit of work itself, survives reconnects through its cursor, and is what
# the SQLite store reads too. The trigger that fills it, and why its seq order
# is commit order, is in migrations_pg/0003_license_changes.sql.
CACHE_BOUND_SECONDS = 0.05

# A health probe takes a connection only if the pool has one ready (or gets
# one within this): while PostgreSQL is unreachable the pool has none, and
# /health answers "unhealthy" at once instead of waiting db_timeout_ms on the
# event loop. A ready connection's SELECT 1 is bounded by the deadline.
PING_POOL_WAIT_SECONDS = 0.01

# libpq's connect_timeout for the pool's connections (its minimum, 2 s): the
# pool connects on its own threads, so a connect into a black hole costs a
# pool worker this long, not the event loop; after the path heals, the pool's
# next attempt is at most this (plus its backoff) away.
CONNECT_TIMEOUT_SECONDS = 2


def pool(url: str, *, timeout_ms: int = 2000, max_size: int = 4) -> ConnectionPool[PgConn]:
    """The pool every store of one process uses; opened, or StorageUnavailable."""
    options = f"-c statement_timeout={int(timeout_ms)} -c lock_timeout={int(timeout_ms)}"
    made: ConnectionPool[PgConn] = ConnectionPool(
        url,
        min_size=1,
        max_size=max_size,
        kwargs={"autocommit": True, "options": options, "connect_timeout": CONNECT_TIMEOUT_SECONDS},
        timeout=timeout_ms / 1000,
        open=False,
        name="licensing",
    )
    try:
        made.open(wait=True, timeout=max(timeout_ms / 1000, 5.0))
    except PoolTimeout as exc:
        made.close()
        raise StorageUnavailable(f"cannot reach PostgreSQL: {exc}") from exc
    return made


class PgStore:
    def __init__(
        self,
        connections: ConnectionPool[PgConn],
        *,
        faults: DbFaults | None = None,
        view: CustomerView | None = None,
        revalidate_seconds: float = CACHE_BOUND_SECONDS,
        monotonic: Callable[[], float] = monotonic,
        feed: bool = True,
        deadline_seconds: float | None = None,
    ) -> None:
        """``deadline_seconds``: the client-side deadline of each call; by default
        the pool's timeout (``db_timeout_ms``, also the statement timeout) plus
        ``DEADLINE_MARGIN_SECONDS``."""
        self.pool = connections
        self.faults = faults or DbFaults()
        self.view = view if view is not None else CustomerView()
        # Off only in the test that shows what the feed is for.
        self._feed = feed
        self._revalidate_seconds = revalidate_seconds
        self._monotonic = monotonic
        self._checked_at = float("-inf")
        if deadline_seconds is None:
            deadline_seconds = connections.timeout + DEADLINE_MARGIN_SECONDS
        self.watchdog = Watchdog(deadline_seconds)
        self._pool_wait: float | None = None  # None: the pool's timeout
        self._sql = PgConnection(self._acquire, self.watchdog)
        self._uow = PgUnitOfWork(self._sql, self.view)
        self._atomic = False
        try:
            self._change_cursor = self._latest_change()
        except BaseException:
            self.watchdog.stop()
            raise

    # ------------------------------------------------------------ the port

    def transaction(self) -> _PgScope:
        return _PgScope(self, atomic=True)

    def autocommit(self) -> _PgScope:
        return _PgScope(self, atomic=False)

    def ping(self) -> None:
        """Probe the database (health checks); the scope applies injected faults once.
        Waits for no reconnect: see ``PING_POOL_WAIT_SECONDS``."""
        self._pool_wait = PING_POOL_WAIT_SECONDS
        try:
            with self.autocommit() as uow:
                uow.ping()
        finally:
            self._pool_wait = None

    def close(self) -> None:
        self.watchdog.stop()
        self.pool.close()

    # ------------------------------------------------------------ helpers

    def _acquire(self) -> PgConn:
        try:
            conn = self.pool.getconn(self._pool_wait)
        except PoolTimeout as exc:
            raise StorageUnavailable(f"no PostgreSQL connection: {exc}") from exc
        if self._atomic:
            try:
                self._sql.run(conn, b"BEGIN")
            except psycopg.Error:
                self.pool.putconn(conn)
                raise
        return conn

    def release(self) -> None:
        conn, self._sql.conn = self._sql.conn, None
        if conn is not None:
            self.pool.putconn(conn)  # a broken or mid-transaction one is discarded or reset

    def _latest_change(self) -> int:
        try:
            return license_feed.latest(self._sql)
        except psycopg.Error as exc:
            raise StorageUnavailable(str(exc)) from exc
        finally:
            self.release()

    def read_license_changes(self) -> None:
        """The view forgets the licenses changed since the cursor; every
        license when the cursor fell behind the feed's retention (license_feed.py)."""
        cursor, emails = license_feed.since(self._sql, self._change_cursor)
        self._checked_at = self._monotonic()
        if cursor != self._change_cursor:
            self._change_cursor = cursor
            if emails is None:
                self.view.forget_everything()
            else:
                self.view.invalidate(emails)


def _mapped(error: BaseException) -> BaseException | None:
    if isinstance(error, pg_errors.IntegrityError):
        return ConstraintViolation(str(error))
    if isinstance(error, psycopg.Error | PoolTimeout):
        return StorageUnavailable(str(error))
    return None


class _PgScope:
    __slots__ = ("_atomic", "_store")

    def __init__(self, store: PgStore, *, atomic: bool) -> None:
        self._store = store
        self._atomic = atomic

    def __enter__(self) -> PgUnitOfWork:
        store = self._store
        if store.faults.active:
            store.faults.enter()
        store._atomic = self._atomic
        if store._feed and store._monotonic() - store._checked_at >= store._revalidate_seconds:
            try:
                store.read_license_changes()
            except psycopg.Error as exc:
                self._end(commit=False)
                raise StorageUnavailable(str(exc)) from exc
        return store._uow

    def _end(self, *, commit: bool) -> None:
        store = self._store
        conn = store._sql.conn
        try:
            if conn is not None and self._atomic and not conn.closed:
                store._sql.run(conn, b"COMMIT" if commit else b"ROLLBACK")
        finally:
            store.release()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> Literal[False]:
        store = self._store
        if kind is None:
            try:
                self._end(commit=True)
            except psycopg.Error as exc:
                store.view.rolled_back()
                mapped = _mapped(exc)
                assert mapped is not None
                raise mapped from exc
            store.view.committed()
            return False
        with contextlib.suppress(psycopg.Error):
            self._end(commit=False)
        store.view.rolled_back()
        mapped = _mapped(error) if error is not None else None
        if mapped is not None:
            raise mapped from error
        return False


class PgUnitOfWork:
    __slots__ = ("_c", "_view", "audit", "billing", "licenses", "outbox", "rate_limits", "sessions")

    def __init__(self, conn: PgConnection, view: CustomerView) -> None:
        self._c = conn
        self._view = view
        self.licenses = SqliteLicenses(conn, view)
        self.sessions = PgSessions(conn)
        self.billing = PgBilling(conn, self.licenses)
        self.outbox = PgOutbox(conn)
        self.audit = SqliteAudit(conn)
        self.rate_limits = SqliteRateLimits(conn)

    def ping(self) -> None:
        self._c.execute("SELECT 1").fetchone()

    def savepoint(self) -> Savepoint:
        return Savepoint(self._c, self._view, psycopg.Error, _mapped)
