"""Circuit breaker around the database, as a clock-driven state machine.

CLOSED --(threshold consecutive failures)--> OPEN --(open_for elapsed)-->
HALF_OPEN --(one trial: success)--> CLOSED, (failure)--> OPEN.

It never reads a clock: callers pass ``now``. It holds mutable state because a
breaker *is* state, but it performs no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum


class BreakerState(StrEnum):
    CLOSED = "CLOSED"
    OPEN = "OPEN"
    HALF_OPEN = "HALF_OPEN"


@dataclass(slots=True)
class CircuitBreaker:
    threshold: int = 5
    open_for: timedelta = field(default_factory=lambda: timedelta(seconds=30))
    state: BreakerState = BreakerState.CLOSED
    failures: int = 0
    last_failure_at: datetime | None = None
    opened_at: datetime | None = None
    trial_in_flight: bool = False

    def allow(self, now: datetime) -> bool:
        """May a call go to the database now? Moves OPEN to HALF_OPEN when due."""
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.OPEN:
            if now < self._reopen_at():
                return False
            self.state = BreakerState.HALF_OPEN
            self.trial_in_flight = False
        if self.trial_in_flight:
            return False
        self.trial_in_flight = True
        return True

    def record_success(self, now: datetime) -> None:
        del now  # part of the protocol; a success needs no timestamp
        self.state = BreakerState.CLOSED
        self.failures = 0
        self.opened_at = None
        self.trial_in_flight = False

    def release(self) -> None:
        """A call ended without saying anything about the database (a bug,
        a cancellation): free the half-open trial slot, change nothing else."""
        self.trial_in_flight = False

    def record_failure(self, now: datetime) -> None:
        self.failures += 1
        self.last_failure_at = now
        self.trial_in_flight = False
        if self.state is BreakerState.HALF_OPEN or self.failures >= self.threshold:
            self.state = BreakerState.OPEN
            self.opened_at = now

    def retry_after_seconds(self, now: datetime) -> int:
        """Whole seconds until a trial may be let through (at least 1)."""
        if self.state is not BreakerState.OPEN:
            return 1
        return max(1, math.ceil((self._reopen_at() - now).total_seconds()))

    def next_attempt(self) -> datetime | None:
        return self._reopen_at() if self.state is BreakerState.OPEN else None

    def _reopen_at(self) -> datetime:
        assert self.opened_at is not None
        return self.opened_at + self.open_for
