"""The ``db.lock`` fault on PostgreSQL: a second connection holding every
table of the service in EXCLUSIVE mode.

EXCLUSIVE lets plain reads through and blocks every write, as SQLite's held
write lock does; a replica's writer then waits its ``lock_timeout`` (the
settings' db_timeout_ms) and fails with StorageUnavailable. Across replicas
too: the lock is the server's, not this process's.
"""

from __future__ import annotations

import psycopg

from licensing_service.adapters.held_lock import HeldLock

TAKE_TIMEOUT_MS = 500
TABLES = (
    "customers, audit_log, email_log, active_sessions, refund_requests, webhook_events,"
    " billing_state, license_changes, license_changes_pruned"
)


class PgWriteLock(HeldLock[psycopg.Connection[tuple[object, ...]]]):
    driver_error = psycopg.Error

    def __init__(self, url: str) -> None:
        super().__init__()
        self._url = url

    def connect(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            self._url,
            autocommit=True,
            connect_timeout=5,
            options=f"-c lock_timeout={TAKE_TIMEOUT_MS}",
        )

    def take(self, conn: psycopg.Connection[tuple[object, ...]]) -> None:
        conn.execute(b"BEGIN")
        conn.execute(f"LOCK TABLE {TABLES} IN EXCLUSIVE MODE".encode())

    def rollback(self, conn: psycopg.Connection[tuple[object, ...]]) -> None:
        conn.execute(b"ROLLBACK")
