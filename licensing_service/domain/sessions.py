"""Device sessions: one alive device per license.

A session is alive while its last start or heartbeat is less than
``SESSION_TTL`` old. A dead session is never revived: the device must start
again, which re-checks for conflicts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

SESSION_TTL = timedelta(seconds=120)


class SessionStatus(StrEnum):
    ACTIVE = "active"
    ENDED = "ended"
    KICKED = "kicked"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class SessionRecord:
    session_id: str
    customer_id: int
    status: str
    last_heartbeat: datetime
    device_info: str | None = None


def is_alive(last_heartbeat: datetime, now: datetime, ttl: timedelta = SESSION_TTL) -> bool:
    return now - last_heartbeat < ttl


@dataclass(frozen=True, slots=True)
class Conflict:
    """Another device holds the license."""

    holder: SessionRecord


@dataclass(frozen=True, slots=True)
class Proceed:
    """Start may go ahead once these stale sessions are marked expired."""

    expire: tuple[str, ...]


def plan_start(
    open_sessions: Iterable[SessionRecord], session_id: str, now: datetime
) -> Conflict | Proceed:
    """Decide a start against the license's sessions still marked active."""
    stale: list[str] = []
    for record in open_sessions:
        if record.session_id == session_id:
            continue  # restarting one's own session never conflicts with oneself
        if is_alive(record.last_heartbeat, now):
            return Conflict(record)
        stale.append(record.session_id)
    return Proceed(tuple(stale))


def plan_takeover(open_sessions: Iterable[SessionRecord], session_id: str) -> tuple[str, ...]:
    """Every other session still marked active is kicked, alive or not."""
    return tuple(r.session_id for r in open_sessions if r.session_id != session_id)


class HeartbeatOutcome(StrEnum):
    ALIVE = "alive"
    NOT_FOUND = "not_found"
    EXPIRED = "expired"  # also returned the first time a stale active session is seen
    KICKED = "kicked"
    ENDED = "ended"


def plan_heartbeat(record: SessionRecord | None, now: datetime) -> HeartbeatOutcome:
    if record is None:
        return HeartbeatOutcome.NOT_FOUND
    if record.status == SessionStatus.KICKED:
        return HeartbeatOutcome.KICKED
    if record.status == SessionStatus.ENDED:
        return HeartbeatOutcome.ENDED
    if record.status == SessionStatus.EXPIRED or not is_alive(record.last_heartbeat, now):
        return HeartbeatOutcome.EXPIRED
    return HeartbeatOutcome.ALIVE
