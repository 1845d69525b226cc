"""SQLite storage: one file, WAL, parameterized SQL only; the unit of work
and its connection (the repositories by topic live in ``sqlite_*.py``).

The SQL here is kept to what PostgreSQL also speaks (no INSERT OR REPLACE,
no datetime('now')); time always comes in as a bound parameter.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from time import monotonic
from types import TracebackType
from typing import Literal

from licensing_service.adapters import license_feed
from licensing_service.adapters.sql import Savepoint
from licensing_service.adapters.sqlite_audit import SqliteAudit
from licensing_service.adapters.sqlite_billing import SqliteBilling
from licensing_service.adapters.sqlite_licenses import SqliteLicenses
from licensing_service.adapters.sqlite_outbox import SqliteOutbox
from licensing_service.adapters.sqlite_rate_limits import SqliteRateLimits
from licensing_service.adapters.sqlite_sessions import SqliteSessions
from licensing_service.service.customer_view import CustomerView
from licensing_service.service.errors import ConstraintViolation, StorageUnavailable
from licensing_service.service.faults import DbFaults

log = logging.getLogger(__name__)

# How long one ``PRAGMA data_version`` reading is trusted. At 1 ms, requests
# arriving within the same millisecond share one reading (the PRAGMA cost ~7%
# of a validation when run for every request), and a commit by another
# connection is seen within 1 ms.
DATA_VERSION_SECONDS = 0.001


def connect(path: str | Path, busy_timeout_ms: int = 2000) -> sqlite3.Connection:
    conn = sqlite3.connect(
        str(path), isolation_level=None, check_same_thread=False, timeout=busy_timeout_ms / 1000
    )
    conn.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL mode: a power cut may lose the last commits, never corrupt.
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    return conn


class Checkpointer:
    """Runs WAL checkpoints on its own connection, in a thread.

    A checkpoint fsyncs the database file; left to SQLite's auto-checkpoint
    it runs inside some unlucky request's COMMIT, on the event loop, and on a
    shared disk that fsync took up to ~100 ms (the p99 of the benchmark).
    PASSIVE mode never blocks the serving connection's writes, and sqlite3
    releases the GIL while it does the I/O.
    """

    def __init__(self, path: Path, interval_seconds: float = 0.5) -> None:
        self._path = path
        self._interval = interval_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wal-checkpointer", daemon=True)

    def start(self) -> Checkpointer:
        self._thread.start()
        return self

    def _run(self) -> None:
        # Below the event loop's priority: on a single core the scheduler then
        # lets requests run first and copies pages in the gaps (Linux: per thread).
        with contextlib.suppress(OSError, AttributeError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        conn = connect(self._path)
        failing = False
        try:
            while not self._stop.wait(self._interval):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error as exc:
                    # Retried next interval; meanwhile the WAL grows, which an operator must see.
                    if not failing:
                        log.warning("WAL checkpoints failing (%s); the WAL file grows", exc)
                    failing = True
                    continue
                if failing:
                    log.warning("WAL checkpoints succeed again")
                failing = False
        finally:
            conn.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)


class SqliteStore:
    def __init__(
        self,
        path: str | Path,
        *,
        faults: DbFaults | None = None,
        background_checkpoints: bool = True,
        view: CustomerView | None = None,
        revalidate_seconds: float = DATA_VERSION_SECONDS,
        monotonic: Callable[[], float] = monotonic,
        busy_timeout_ms: int = 2000,
    ) -> None:
        self.path = Path(path)
        # Inert unless a harness-mode composition root switches it on.
        self.faults = faults or DbFaults(busy_timeout_ms)
        try:
            self._conn = connect(self.path, busy_timeout_ms)
            if background_checkpoints:
                self._conn.execute("PRAGMA wal_autocheckpoint=0")
        except sqlite3.Error as exc:
            raise StorageUnavailable(f"cannot open database: {exc}") from exc
        self.view = view if view is not None else CustomerView()
        self._uow = SqliteUnitOfWork(self._conn, self.view)
        self._checkpointer = Checkpointer(self.path).start() if background_checkpoints else None
        self._revalidate_seconds = revalidate_seconds
        self._monotonic = monotonic
        self._checked_at = float("-inf")
        self._data_version: int | None = None
        self._change_cursor = 0

    def transaction(self) -> _Scope:
        """BEGIN IMMEDIATE ... COMMIT: writers serialise here, across processes too."""
        return _Scope(self, atomic=True)

    def autocommit(self) -> _Scope:
        """Each statement commits on its own: for a read followed by at most one write."""
        return _Scope(self, atomic=False)

    def revalidate(self) -> None:
        """Read ``data_version``, which changes exactly when *another*
        connection (another worker, an operator, a migration) has committed;
        then the view forgets its fresh rows, and the licenses that commit
        named in the ``license_changes`` feed altogether. The first reading
        only sets the baselines: nothing is held from before it."""
        conn = self._conn
        self._checked_at = self._monotonic()
        version = conn.execute("PRAGMA data_version").fetchone()[0]
        if version == self._data_version:
            return
        first = self._data_version is None
        self._data_version = version
        if first:
            self._change_cursor = license_feed.latest(conn)
            return
        self.view.invalidate_all()
        cursor, emails = license_feed.since(conn, self._change_cursor)
        if cursor != self._change_cursor:
            self._change_cursor = cursor
            if emails is None:  # behind the feed's retention (license_feed.py)
                self.view.forget_everything()
            else:
                self.view.invalidate(emails)

    def ping(self) -> None:
        """Probe the database outside any transaction (health checks)."""
        if self.faults.active:
            self.faults.enter()
        try:
            self._conn.execute("SELECT 1").fetchone()
        except sqlite3.Error as exc:
            raise StorageUnavailable(str(exc)) from exc

    def connection(self) -> sqlite3.Connection:
        return self._conn

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
        self._conn.close()


class _Scope:
    """A class-based context manager: ~4x cheaper than @contextmanager on the hot path."""

    __slots__ = ("_atomic", "_store")

    def __init__(self, store: SqliteStore, *, atomic: bool) -> None:
        self._store = store
        self._atomic = atomic

    def __enter__(self) -> SqliteUnitOfWork:
        store = self._store
        if store.faults.active:
            store.faults.enter()
        conn = store._conn
        try:
            if self._atomic:
                conn.execute("BEGIN IMMEDIATE")
            if store._monotonic() - store._checked_at >= store._revalidate_seconds:
                store.revalidate()
        except sqlite3.Error as exc:
            if self._atomic:
                _rollback(conn)
            raise StorageUnavailable(str(exc)) from exc
        return store._uow

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> Literal[False]:
        store = self._store
        conn = store._conn
        if kind is None:
            if self._atomic:
                try:
                    conn.execute("COMMIT")
                except sqlite3.Error as exc:
                    _rollback(conn)
                    store.view.rolled_back()
                    raise StorageUnavailable(str(exc)) from exc
            store.view.committed()
            return False
        if self._atomic:
            _rollback(conn)
        store.view.rolled_back()
        if isinstance(error, sqlite3.IntegrityError):
            raise ConstraintViolation(str(error)) from error
        if isinstance(error, sqlite3.Error):
            raise StorageUnavailable(str(error)) from error
        return False


def _rollback(conn: sqlite3.Connection) -> None:
    # SQLite may already have ended the transaction itself (e.g. on SQLITE_FULL).
    with contextlib.suppress(sqlite3.Error):
        conn.execute("ROLLBACK")


class SqliteUnitOfWork:
    """The repositories of the serving connection, one per topic. One object
    for the store's life: a unit of work is the scope around it, not a new
    object per request (the hot path)."""

    __slots__ = ("_c", "_view", "audit", "billing", "licenses", "outbox", "rate_limits", "sessions")

    def __init__(self, conn: sqlite3.Connection, view: CustomerView) -> None:
        self._c = conn
        self._view = view
        self.licenses = SqliteLicenses(conn, view)
        self.sessions = SqliteSessions(conn)
        self.billing = SqliteBilling(conn, self.licenses)
        self.outbox = SqliteOutbox(conn)
        self.audit = SqliteAudit(conn)
        self.rate_limits = SqliteRateLimits(conn)

    def ping(self) -> None:
        self._c.execute("SELECT 1").fetchone()

    def savepoint(self) -> Savepoint:
        return Savepoint(self._c, self._view, sqlite3.Error, _mapped)


def _mapped(error: BaseException) -> BaseException | None:
    if isinstance(error, sqlite3.IntegrityError):
        return ConstraintViolation(str(error))
    if isinstance(error, sqlite3.Error):
        return StorageUnavailable(str(error))
    return None
