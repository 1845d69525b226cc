"""SQLite side of device sessions (``active_sessions``).

The partial unique index ``uq_sessions_one_active`` makes "at most one
active session per license" a constraint: a second one fails the INSERT
(an IntegrityError, which the unit of work reports as ConstraintViolation).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from licensing_service.adapters.sql import Sql
from licensing_service.adapters.sqltime import from_db, to_db
from licensing_service.domain.sessions import SessionRecord, SessionStatus

_SESSION_COLUMNS = "session_id, customer_id, status, last_heartbeat, device_info"


def _session(row: tuple[Any, ...]) -> SessionRecord:
    heartbeat = from_db(row[3])
    assert heartbeat is not None
    return SessionRecord(row[0], row[1], row[2], heartbeat, row[4])


class SqliteSessions:
    def __init__(self, conn: Sql) -> None:
        self._c = conn

    def get(self, session_id: str) -> SessionRecord | None:
        row = self._c.execute(
            f"SELECT {_SESSION_COLUMNS} FROM active_sessions WHERE session_id = ?", (session_id,)
        ).fetchone()
        return None if row is None else _session(row)

    def open_for(self, customer_id: int) -> list[SessionRecord]:
        rows = self._c.execute(
            f"SELECT {_SESSION_COLUMNS} FROM active_sessions WHERE customer_id = ? AND status = ?",
            (customer_id, SessionStatus.ACTIVE.value),
        ).fetchall()
        return [_session(r) for r in rows]

    def start(
        self,
        record: SessionRecord,
        fingerprint: str | None,
        client_address: str | None,
        now: datetime,
    ) -> None:
        row = {
            "session_id": record.session_id,
            "customer_id": record.customer_id,
            "status": record.status,
            "device_info": record.device_info,
            "fingerprint": fingerprint,
            "client": client_address,
            "stamp": to_db(now),
        }
        updated = self._c.execute(
            "UPDATE active_sessions SET status = :status, device_info = :device_info,"
            " machine_fingerprint = :fingerprint, client_address = :client,"
            " started_at = :stamp, last_heartbeat = :stamp, ended_at = NULL"
            " WHERE session_id = :session_id AND customer_id = :customer_id",
            row,
        ).rowcount
        if updated == 0:
            self._c.execute(
                "INSERT INTO active_sessions (session_id, customer_id, status, device_info,"
                " machine_fingerprint, client_address, started_at, last_heartbeat)"
                " VALUES (:session_id, :customer_id, :status, :device_info, :fingerprint,"
                " :client, :stamp, :stamp)",
                row,
            )

    def set_status(self, session_ids: Sequence[str], status: str, now: datetime) -> None:
        stamp = to_db(now)
        self._c.executemany(
            "UPDATE active_sessions SET status = ?, ended_at = ? WHERE session_id = ?",
            [(status, stamp, sid) for sid in session_ids],
        )

    def touch(self, session_id: str, now: datetime) -> None:
        self._c.execute(
            "UPDATE active_sessions SET last_heartbeat = ? WHERE session_id = ?",
            (to_db(now), session_id),
        )

    def count_alive(self, since: datetime) -> int:
        row = self._c.execute(
            "SELECT COUNT(*) FROM active_sessions WHERE status = ? AND last_heartbeat > ?",
            (SessionStatus.ACTIVE.value, to_db(since)),
        ).fetchone()
        return int(row[0])
