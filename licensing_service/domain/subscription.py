"""Whether a license is in good standing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class SubscriptionStatus(StrEnum):
    """What the billing system last told us (stored in ``customers.subscription_status``)."""

    ACTIVE = "active"
    INACTIVE = "inactive"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class Standing:
    is_active: bool
    # What clients are told: the stored status, or "expired" for an active
    # status whose paid period has ended.
    reported_status: str


def standing(status: str, current_period_end: datetime | None, now: datetime) -> Standing:
    """A license is active when its status is active and its period has not ended."""
    if status != SubscriptionStatus.ACTIVE:
        return Standing(False, status)
    if current_period_end is not None and current_period_end <= now:
        return Standing(False, "expired")
    return Standing(True, status)


def days_remaining(current_period_end: datetime | None, now: datetime) -> int | None:
    if current_period_end is None:
        return None
    return max(0, (current_period_end - now).days)
