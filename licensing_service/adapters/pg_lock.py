"""The ``db.lock`` fault on PostgreSQL: a second connection holding every
table of the service in EXCLUSIVE mode.

EXCLUSIVE lets plain reads through and blocks every write, as SQLite's held
write lock does; a replica's writer then waits its ``lock_timeout`` (the
settings' db_timeout_ms) and fails with StorageUnavailable. Across replicas
too: the lock is the server's, not this process's.
"""

from __future__ import annotations

import contextlib

import psycopg

from licensing_service.service.errors import StorageUnavailable

TAKE_TIMEOUT_MS = 500
TABLES = (
    "customers, audit_log, email_log, active_sessions, refund_requests, webhook_events,"
    " billing_state, license_changes, license_changes_pruned"
)


class PgWriteLock:
    def __init__(self, url: str) -> None:
        self._url = url
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None

    def hold(self) -> None:
        if self._conn is not None:
            return
        try:
            conn = psycopg.connect(
                self._url,
                autocommit=True,
                connect_timeout=5,
                options=f"-c lock_timeout={TAKE_TIMEOUT_MS}",
            )
        except psycopg.Error as exc:
            raise StorageUnavailable(str(exc)) from exc
        try:
            conn.execute(b"BEGIN")
            conn.execute(f"LOCK TABLE {TABLES} IN EXCLUSIVE MODE".encode())
        except psycopg.Error as exc:
            conn.close()
            raise StorageUnavailable(str(exc)) from exc
        self._conn = conn

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        with contextlib.suppress(psycopg.Error):
            conn.execute(b"ROLLBACK")
        conn.close()
