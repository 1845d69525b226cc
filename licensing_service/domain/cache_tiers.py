"""How long a device may cache a validation answer."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class CacheTier:
    strategy: str
    seconds: int
    # Devices re-check at 80% of the tier so a slow network never lets the cache lapse.
    next_check_seconds: int
    recommendation: str
    _lifetime: timedelta = field(init=False, repr=False, compare=False)
    _recheck: timedelta = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_lifetime", timedelta(seconds=self.seconds))
        object.__setattr__(self, "_recheck", timedelta(seconds=self.next_check_seconds))

    def valid_until(self, now: datetime) -> datetime:
        return now + self._lifetime

    def next_check(self, now: datetime) -> datetime:
        return now + self._recheck


# Recommendations are POSPal's machine-readable codes, which clients switch on.
AGGRESSIVE = CacheTier("aggressive", 3600, 2880, "cache_locally")
MODERATE = CacheTier("moderate", 1800, 1440, "periodic_check")
CONSERVATIVE = CacheTier("conservative", 900, 720, "frequent_validation")
MINIMAL = CacheTier("minimal", 300, 240, "frequent_validation")
INSTANT = AGGRESSIVE

RECENT = timedelta(hours=1)
TODAY = timedelta(hours=24)


def tier_for(*, active: bool, last_validation: datetime | None, now: datetime) -> CacheTier:
    """Pick the tier from the last successful validation *before* this request.

    Boundaries are half-open: 3599 s ago is still "recent", 3600 s is not.
    A last validation in the future (a clock moved back) counts as recent.
    """
    if not active:
        return MINIMAL
    if last_validation is None:
        return CONSERVATIVE
    elapsed = now - last_validation
    if elapsed < RECENT:
        return AGGRESSIVE
    if elapsed < TODAY:
        return MODERATE
    return CONSERVATIVE
