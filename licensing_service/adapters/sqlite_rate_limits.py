"""The shared failure feed (``rate_limit_failures``), on SQLite and, through
``pg_connection.PgConnection``, on PostgreSQL: one copy of each query.

A reader's cursor must never pass a row committed later with a lower ``seq``.
SQLite: AUTOINCREMENT draws it inside the write lock on the file, so seq order
is commit order. PostgreSQL: a sequence alone is not, so the insert trigger
takes the advisory lock FAILURE_FEED first (migrations_pg/0005).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from licensing_service.adapters.sql import Sql
from licensing_service.adapters.sqltime import from_db, to_db
from licensing_service.service.ports import FailureRow


class SqliteRateLimits:
    def __init__(self, conn: Sql) -> None:
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
