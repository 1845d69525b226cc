"""SQLite side of the email outbox (``email_log``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from licensing_service.adapters.sql import Sql
from licensing_service.adapters.sqltime import to_db
from licensing_service.service.ports import NewEmail, QueuedEmail

_LISTING_COLUMNS = (
    "id",
    "customer_id",
    "email_type",
    "recipient",
    "payload",
    "delivery_status",
    "attempts",
    "next_attempt_at",
    "last_error",
    "created_at",
    "delivered_at",
)


class SqliteOutbox:
    def __init__(self, conn: Sql) -> None:
        self._c = conn

    def enqueue(self, email: NewEmail, now: datetime) -> bool:
        """Queue an email; False when its dedupe key was already queued."""
        stamp = to_db(now)
        params = (
            email.customer_id,
            email.email_type,
            email.recipient,
            json.dumps(email.payload, sort_keys=True),
            stamp,
            email.dedupe_key,
            stamp,
        )
        cursor = self._c.execute(
            "INSERT INTO email_log (customer_id, email_type, recipient, payload,"
            " next_attempt_at, dedupe_key, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (dedupe_key) DO NOTHING",
            params,
        )
        return cursor.rowcount == 1

    def claim_due(self, now: datetime, limit: int, lease: timedelta) -> list[QueuedEmail]:
        """Due emails, each claimed until ``now + lease`` so that no other worker
        sends it meanwhile; a sender that dies lets the lease run out and the
        email is sent again (at least once, never lost)."""
        rows = self._c.execute(
            "SELECT id, email_type, recipient, customer_id, payload, attempts FROM email_log"
            " WHERE delivery_status = 'pending' AND next_attempt_at <= ?"
            " ORDER BY next_attempt_at, id LIMIT ?",
            (to_db(now), limit),
        ).fetchall()
        return self.lease(rows, now, lease)

    def lease(self, rows: list[Any], now: datetime, lease: timedelta) -> list[QueuedEmail]:
        """Move the selected rows' next attempt past the lease: claimed."""
        self._c.executemany(
            "UPDATE email_log SET next_attempt_at = ? WHERE id = ?",
            [(to_db(now + lease), r[0]) for r in rows],
        )
        return [QueuedEmail(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5]) for r in rows]

    def mark_delivered(self, email_id: int, provider_id: str, now: datetime) -> None:
        self._c.execute(
            "UPDATE email_log SET delivery_status = 'delivered', resend_id = ?, delivered_at = ?,"
            " attempts = attempts + 1, last_error = NULL WHERE id = ?",
            (provider_id, to_db(now), email_id),
        )

    def mark_retry(self, email_id: int, error: str, next_attempt: datetime) -> None:
        self._c.execute(
            "UPDATE email_log SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?"
            " WHERE id = ?",
            (error, to_db(next_attempt), email_id),
        )

    def mark_failed(self, email_id: int, error: str) -> None:
        self._c.execute(
            "UPDATE email_log SET delivery_status = 'failed', attempts = attempts + 1,"
            " last_error = ? WHERE id = ?",
            (error, email_id),
        )

    def listing(self, limit: int, recipients: Sequence[str] = ()) -> list[dict[str, Any]]:
        where = ""
        if recipients:
            where = f" WHERE recipient IN ({', '.join('?' * len(recipients))})"
        rows = self._c.execute(
            f"SELECT {', '.join(_LISTING_COLUMNS)} FROM email_log{where} ORDER BY id LIMIT ?",
            (*recipients, limit),
        ).fetchall()
        result = [dict(zip(_LISTING_COLUMNS, row, strict=True)) for row in rows]
        for item in result:
            item["payload"] = json.loads(item["payload"])
        return result

    def pending_count(self) -> int:
        row = self._c.execute(
            "SELECT COUNT(*) FROM email_log WHERE delivery_status = 'pending'"
        ).fetchone()
        return int(row[0])
