"""Timestamps as stored: naive UTC text 'YYYY-MM-DD HH:MM:SS.ffffff'.

That form sorts as text in time order and compares with SQLite's own
datetime() output, so operators' ad-hoc SQL keeps working. Both functions
sit on the validation hot path, hence the slicing instead of replace().
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache


# One request's `now` is written up to three times (audit row, last
# validation, last seen), usually in the same group commit: format it once.
@lru_cache(maxsize=8192)
def to_db(when: datetime) -> str:
    if when.utcoffset():
        when = when.astimezone(UTC)
    # Aware isoformat always has 26 characters before the offset with "microseconds".
    return when.isoformat(" ", "microseconds")[:26]


def from_db(text: str | None) -> datetime | None:
    if text is None:
        return None
    return datetime.fromisoformat(text + "+00:00" if len(text) <= 26 else text)


def opt_to_db(when: datetime | None) -> str | None:
    return None if when is None else to_db(when)
