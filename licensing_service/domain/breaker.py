"""Circuit breaker around the database, as a clock-driven state machine.

CLOSED --(threshold consecutive failures)--> OPEN --(open_for elapsed)-->
HALF_OPEN --(one trial: success)--> CLOSED, (failure)--> OPEN.

"Consecutive" is per kind of proof: a read that succeeds does not prove that
writes work. While writes fail (another connection holds the write lock, the
disk is full) and WAL reads go on, read successes leave the count alone, so
the write failures still open the breaker instead of each one stalling the
service for a busy timeout; and a read that wins the half-open trial closes
it with the count kept, so the next failed write reopens it at once. A
successful write resets everything.

A call slower than ``slow_call_s`` (when set) counts as a failure although it
succeeded: the database runs on the service's event loop, so a slow database
is paid by every request in line behind it, and opening the breaker (reads
from the snapshot, writes refused fast) is what keeps the queue bounded. Such
a failure proves nothing about writes, so it is recorded as a read's.

It never reads a clock: callers pass ``now`` (and a call's elapsed seconds).
It holds mutable state because a breaker *is* state, but it performs no I/O.
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
    # A write failed since the last successful write.
    writes_failing: bool = False
    # Calls at least this slow (seconds) count as failures; None: never.
    slow_call_s: float | None = None

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

    def record_success(self, now: datetime, *, wrote: bool = True, elapsed_s: float = 0.0) -> None:
        """``wrote``: the unit held the write lock (a transaction), not only read.
        ``elapsed_s``: how long the call took, judged against ``slow_call_s``."""
        if self.slow_call_s is not None and elapsed_s >= self.slow_call_s:
            self.record_failure(now, wrote=False)
            return
        if wrote or not self.writes_failing:
            self.failures = 0
            self.writes_failing = False
        elif self.state is BreakerState.CLOSED:
            return  # the database reads; the writes' outage goes on
        self.state = BreakerState.CLOSED
        self.opened_at = None
        self.trial_in_flight = False

    def release(self) -> None:
        """A call ended without saying anything about the database (a bug,
        a cancellation): free the half-open trial slot, change nothing else."""
        self.trial_in_flight = False

    def record_failure(self, now: datetime, *, wrote: bool = True) -> None:
        self.failures += 1
        self.writes_failing = self.writes_failing or wrote
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
