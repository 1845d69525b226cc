"""SQLite side of the shared failure feed (``rate_limit_failures``).

AUTOINCREMENT gives each row a ``seq`` in commit order (writers serialise on
the file), so a reader's cursor never skips a row committed after it looked.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime

from licensing_service.adapters.sqltime import from_db, to_db
from licensing_service.service.ports import FailureRow


class SqliteRateLimits:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._c = conn

    def record_failures(self, rows: Sequence[tuple[str, str, datetime]], replica: str) -> None:
        self._c.executemany(
            "INSERT INTO rate_limit_failures (scope, key, failed_at, replica) VALUES (?, ?, ?, ?)",
            [(scope, key, to_db(at), replica) for scope, key, at in rows],
        )

    def failures_after(self, seq: int, limit: int) -> list[FailureRow]:
        rows = self._c.execute(
            "SELECT seq, scope, key, failed_at, replica FROM rate_limit_failures"
            " WHERE seq > ? ORDER BY seq LIMIT ?",
            (seq, limit),
        ).fetchall()
        return [FailureRow(r[0], r[1], r[2], _at(r[3]), r[4]) for r in rows]

    def last_seq(self) -> int:
        row = self._c.execute("SELECT COALESCE(MAX(seq), 0) FROM rate_limit_failures").fetchone()
        return int(row[0])

    def prune(self, before: datetime) -> int:
        cursor = self._c.execute(
            "DELETE FROM rate_limit_failures WHERE failed_at < ?", (to_db(before),)
        )
        return cursor.rowcount


def _at(text: str) -> datetime:
    when = from_db(text)
    assert when is not None  # the column is NOT NULL
    return when
