"""Who may process a webhook event, decided from its recorded claim and ``now``."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

# How long a "processing" claim holds before another delivery may take it
# over. Our own claims commit together with their effects, so a visible
# "processing" row was left by a worker that died mid-way in another
# implementation (POSPal never expires them) or imported with its data.
DEFAULT_LEASE = timedelta(seconds=60)


class Claim(StrEnum):
    NEW = "new"  # never seen: insert the claim
    RETRY = "retry"  # an earlier attempt failed: process again
    TAKE_OVER = "take_over"  # a claim whose lease ran out: process again
    DUPLICATE = "duplicate"  # already processed: no effects, 200
    IN_FLIGHT = "in_flight"  # another worker holds a live lease: ask Stripe to retry


def decide_claim(
    status: str | None,
    lease_until: datetime | None,
    received_at: datetime | None,
    now: datetime,
    lease: timedelta = DEFAULT_LEASE,
) -> Claim:
    if status is None:
        return Claim.NEW
    if status == "completed":
        return Claim.DUPLICATE
    if status == "failed":
        return Claim.RETRY
    # "processing": a row without a lease (imported) holds for one lease from arrival.
    expires = lease_until or ((received_at + lease) if received_at is not None else now)
    return Claim.IN_FLIGHT if now < expires else Claim.TAKE_OVER
