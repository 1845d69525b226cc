"""Failed credential attempts shared between replicas (``uow.rate_limits``).

Each process keeps its sliding windows in memory (``domain.rate_limit``), so
the check on every request stays a dictionary lookup: a validation that does
not fail pays neither a write nor a read. A failure is counted at once in the
process that saw it and queued; the audit flusher (every ``audit_flush_ms``)
writes the queue and reads the other replicas' failures from the feed, in one
scope.

The bound: a failure seen by one replica counts on every other replica within
two flush intervals (its writer's flush, then the reader's), 100 ms at the
default 50 ms. A brute force spread over N replicas is therefore held to the
limit plus what it lands on the other replicas within those 100 ms, where the
per-process limiter let it have N times the limit in every window.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from licensing_service.domain.rate_limit import FailureLimiter
from licensing_service.service.ports import UnitOfWork

# A failed write keeps the queue for the next flush; during a long outage the
# oldest are dropped (they would mostly be outside the window by then anyway).
MAX_PENDING = 10_000
FEED_BATCH = 1_000
MAX_BATCHES = 100  # bounded however fast the others write


@dataclass(slots=True)
class SharedFailures:
    window: timedelta
    replica: str = field(default_factory=lambda: secrets.token_hex(8))
    _pending: list[tuple[str, str, datetime]] = field(default_factory=list)
    _cursor: int = 0  # from the start: a new replica learns the failures in the window
    _pruned_at: datetime | None = None

    def note(self, scope: str, key: str, at: datetime) -> None:
        self._pending.append((scope, key, at))
        if len(self._pending) > MAX_PENDING:
            del self._pending[: len(self._pending) - MAX_PENDING]

    def take(self) -> list[tuple[str, str, datetime]]:
        taken, self._pending = self._pending, []
        return taken

    def put_back(self, rows: list[tuple[str, str, datetime]]) -> None:
        self._pending[:0] = rows
        if len(self._pending) > MAX_PENDING:
            del self._pending[: len(self._pending) - MAX_PENDING]

    def exchange(
        self,
        uow: UnitOfWork,
        mine: list[tuple[str, str, datetime]],
        limiters: dict[str, FailureLimiter],
        now: datetime,
    ) -> int:
        """Write ``mine``, then count the others' new failures in ``limiters``
        (by scope); returns how many were learnt."""
        repo = uow.rate_limits
        if mine:
            repo.record_failures(mine, self.replica)
        learnt = 0
        oldest = now - self.window
        for _ in range(MAX_BATCHES):
            rows = repo.failures_after(self._cursor, FEED_BATCH)
            for row in rows:
                limiter = limiters.get(row.scope)
                if row.replica != self.replica and row.at > oldest and limiter is not None:
                    limiter.record_failure(row.key, row.at)
                    learnt += 1
            if rows:
                self._cursor = rows[-1].seq
            if len(rows) < FEED_BATCH:
                break
        if mine and (self._pruned_at is None or now - self._pruned_at >= self.window):
            repo.prune(oldest)
            self._pruned_at = now
        return learnt
