"""A second connection that holds the SQLite write lock (``db.lock`` fault).

A real lock, not a simulated one: while it is held every writer on the file
(this process's serving connection, other workers) waits its busy timeout
and fails with SQLITE_BUSY, and WAL readers go on reading, as they would
behind a long migration or a stuck batch job.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from licensing_service.service.errors import StorageUnavailable

# Taking the lock must not stall the harness route for long: another worker's
# write ends in milliseconds, anything longer is a lock someone else holds.
TAKE_TIMEOUT_MS = 500


class SqliteWriteLock:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._conn: sqlite3.Connection | None = None

    def hold(self) -> None:
        if self._conn is not None:
            return
        try:
            conn = sqlite3.connect(
                str(self._path),
                isolation_level=None,
                check_same_thread=False,
                timeout=TAKE_TIMEOUT_MS / 1000,
            )
        except sqlite3.Error as exc:
            raise StorageUnavailable(str(exc)) from exc
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            conn.close()
            raise StorageUnavailable(str(exc)) from exc
        self._conn = conn

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        conn.close()
