"""Timestamps as stored: naive UTC text 'YYYY-MM-DD HH:MM:SS.ffffff'.

That form sorts as text in time order and compares with SQLite's own
datetime() output, so operators' ad-hoc SQL keeps working.
"""

from __future__ import annotations

from datetime import UTC, datetime


def to_db(when: datetime) -> str:
    return when.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def from_db(text: str | None) -> datetime | None:
    if text is None:
        return None
    parsed = datetime.fromisoformat(text)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
