"""What the service's SQLite file holds after a storm, read straight from the file.

The durability judges trust no answer the service gives: an event it said it
took must be in ``webhook_events`` as completed, and its audit rows and outbox
emails must be there once each. Read-only (``mode=ro``), and safe while the
service still runs (WAL: a reader sees the last committed state).

This reads the reference service's schema (``licensing_service/adapters/
migrations/``), which is not part of its contract: a rehearsal of another
service passes no database and these judges are skipped.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# status_change and license_created are written in the webhook's own transaction
# (service/webhooks.py); validation audit rows are group-committed later and may
# be lost by design (README, "Storage and durability"), so they are not judged.
WEBHOOK_AUDIT_ACTIONS = ("license_created", "status_change")


@dataclass(frozen=True, slots=True)
class AuditRow:
    id: int
    customer_id: int | None
    action: str
    outcome: str
    event_id: str | None  # details.event, for status changes


@dataclass(frozen=True, slots=True)
class License:
    id: int
    email: str
    status: str


@dataclass(frozen=True, slots=True)
class Stored:
    """The part of the database the storm judges read."""

    completed: frozenset[str]  # webhook event ids whose claim is completed
    licenses: dict[str, License]  # by email, for the emails asked for
    audit: list[AuditRow]  # the webhook's audit rows for those licenses, in commit order
    outbox: list[dict[str, Any]]  # recipient, email_type, dedupe_key for those emails


@contextmanager
def _read_only(db: Path) -> Iterator[sqlite3.Connection]:
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)) as conn:
        conn.row_factory = sqlite3.Row
        yield conn


def read_stored(db: Path, emails: Iterable[str]) -> Stored:
    wanted = sorted(set(emails))
    with _read_only(db) as conn:
        completed = frozenset(
            str(r[0])
            for r in conn.execute(
                "SELECT stripe_event_id FROM webhook_events WHERE processing_status = 'completed'"
            )
        )
        licenses = {
            str(r["email"]): License(int(r["id"]), str(r["email"]), str(r["subscription_status"]))
            for r in _in(
                conn, "SELECT id, email, subscription_status FROM customers", "email", wanted
            )
        }
        ids = sorted(lic.id for lic in licenses.values())
        actions = ", ".join(f"'{a}'" for a in WEBHOOK_AUDIT_ACTIONS)
        audit = [
            AuditRow(
                int(r["id"]),
                r["customer_id"],
                str(r["action"]),
                str(r["outcome"]),
                _event_of(r["details"]),
            )
            for r in _in(
                conn,
                f"SELECT id, customer_id, action, outcome, details FROM audit_log"
                f" WHERE action IN ({actions}) AND",
                "customer_id",
                ids,
            )
        ]
        outbox = [
            dict(r)
            for r in _in(
                conn, "SELECT recipient, email_type, dedupe_key FROM email_log", "recipient", wanted
            )
        ]
    audit.sort(key=lambda row: row.id)
    return Stored(completed, licenses, audit, outbox)


def _in(conn: sqlite3.Connection, select: str, column: str, values: list[Any]) -> list[Any]:
    """``select ... WHERE column IN (values)`` in chunks (SQLite bounds the parameters)."""
    joiner = " " if select.rstrip().endswith("AND") else " WHERE "
    rows: list[Any] = []
    for i in range(0, len(values), 500):
        chunk = values[i : i + 500]
        marks = ", ".join("?" * len(chunk))
        rows += conn.execute(f"{select}{joiner}{column} IN ({marks})", chunk).fetchall()
    return rows


def _event_of(details: str | None) -> str | None:
    if not details:
        return None
    try:
        parsed = json.loads(details)
    except ValueError:
        return None
    event = parsed.get("event") if isinstance(parsed, dict) else None
    return event if isinstance(event, str) else None
