"""What Stripe's events mean for a license, independent of delivery order.

Stripe delivers at least once and in no guaranteed order, so each event is
reduced to a *fact* stamped with a version, and facts are merged so that the
result is the same whatever order they arrive in (a join: commutative,
associative, idempotent):

* the license status is the status claimed by the fact with the highest
  version ``(event created, rank, event id)``. ``created`` is Stripe's own
  time of the change; ``rank`` breaks same-second ties towards the more
  restrictive status (a cancellation and a payment in the same second leave
  the license cancelled); the event id makes the order total;
* the period end is the latest one any event reported: a paid period only
  ever moves forward, and the status decides whether it counts;
* failed payments are counted, one per event (events are applied once).

A fact older than the state is *stale*: recorded, but it changes no status.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from licensing_service.domain.subscription import SubscriptionStatus

# Stripe subscription statuses → license status. No grace: anything that is
# not paid-up is inactive at once.
STRIPE_STATUS: dict[str, SubscriptionStatus] = {
    "active": SubscriptionStatus.ACTIVE,
    "trialing": SubscriptionStatus.ACTIVE,
    "past_due": SubscriptionStatus.INACTIVE,
    "unpaid": SubscriptionStatus.INACTIVE,
    "incomplete": SubscriptionStatus.INACTIVE,
    "paused": SubscriptionStatus.INACTIVE,
    "canceled": SubscriptionStatus.CANCELLED,
    "incomplete_expired": SubscriptionStatus.CANCELLED,
}

_RANK = {
    SubscriptionStatus.ACTIVE: 0,
    SubscriptionStatus.INACTIVE: 1,
    SubscriptionStatus.CANCELLED: 2,
}


@dataclass(frozen=True, slots=True, order=True)
class Version:
    created: int  # the event's ``created`` (unix seconds)
    rank: int
    event_id: str

    @classmethod
    def of(cls, created: int, status: SubscriptionStatus, event_id: str) -> Version:
        return cls(created, _RANK[status], event_id)


@dataclass(frozen=True, slots=True)
class BillingFact:
    """What one event says. ``status`` None: the event claims no status (a refund)."""

    event_id: str
    created: int
    status: SubscriptionStatus | None = None
    period_end: datetime | None = None
    subscription_id: str | None = None
    payment_failed: bool = False

    @property
    def version(self) -> Version | None:
        if self.status is None:
            return None
        return Version.of(self.created, self.status, self.event_id)


@dataclass(frozen=True, slots=True)
class BillingState:
    """The merge of every fact seen for one Stripe customer."""

    status: SubscriptionStatus | None
    version: Version | None
    period_end: datetime | None
    subscription_id: str | None
    # The version of the newest fact that named a subscription: a fact may
    # claim a status without naming one (customer.deleted).
    subscription_version: Version | None
    payment_failures: int

    @classmethod
    def empty(cls) -> BillingState:
        return cls(None, None, None, None, None, 0)


@dataclass(frozen=True, slots=True)
class Merged:
    state: BillingState
    stale: bool  # the fact claimed a status, but a newer one already holds
    status_changed: bool


def merge(state: BillingState | None, fact: BillingFact) -> Merged:
    old = state or BillingState.empty()
    version = fact.version
    newer = version is not None and (old.version is None or version > old.version)
    status, winner = (fact.status, version) if newer else (old.status, old.version)
    subscription_id, sub_version = old.subscription_id, old.subscription_version
    names_newer = version is not None and (sub_version is None or version > sub_version)
    if fact.subscription_id is not None and names_newer:
        subscription_id, sub_version = fact.subscription_id, version
    merged = BillingState(
        status,
        winner,
        _later(old.period_end, fact.period_end),
        subscription_id,
        sub_version,
        old.payment_failures + (1 if fact.payment_failed else 0),
    )
    stale = version is not None and not newer
    return Merged(merged, stale=stale, status_changed=status != old.status)


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)
