"""A second connection that holds the SQLite write lock (``db.lock`` fault).

A real lock, not a simulated one: while it is held every writer on the file
(this process's serving connection, other workers) waits its busy timeout
and fails with SQLITE_BUSY, and WAL readers go on reading, as they would
behind a long migration or a stuck batch job.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from licensing_service.adapters.held_lock import HeldLock

# Taking the lock must not stall the harness route for long: another worker's
# write ends in milliseconds, anything longer is a lock someone else holds.
TAKE_TIMEOUT_MS = 500


class SqliteWriteLock(HeldLock[sqlite3.Connection]):
    driver_error = sqlite3.Error

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._path = path

    def connect(self) -> sqlite3.Connection:
        return sqlite3.connect(
            str(self._path),
            isolation_level=None,
            check_same_thread=False,
            timeout=TAKE_TIMEOUT_MS / 1000,
        )

    def take(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")

    def rollback(self, conn: sqlite3.Connection) -> None:
        conn.execute("ROLLBACK")
