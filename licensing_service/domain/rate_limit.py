"""Sliding-window limits on failed credential attempts (per IP, per email)."""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta


@dataclass(slots=True)
class FailureLimiter:
    """Blocks a key after ``limit`` failures within ``window``.

    Only failures count, so a busy till with the right token is never slowed.
    The number of tracked keys is bounded (least recently failed evicted first)
    so a flood of random emails cannot exhaust memory.
    """

    limit: int
    window: timedelta
    max_keys: int = 100_000
    _failures: OrderedDict[str, deque[datetime]] = field(default_factory=OrderedDict)

    def retry_after(self, key: str, now: datetime) -> int | None:
        """Seconds until ``key`` may try again, or None when it is not blocked."""
        times = self._failures.get(key)
        if times is None:
            return None
        self._trim(times, now)
        if len(times) < self.limit:
            return None
        unblock_at = times[-self.limit] + self.window
        return max(1, math.ceil((unblock_at - now).total_seconds()))

    def record_failure(self, key: str, now: datetime) -> None:
        times = self._failures.get(key)
        if times is None:
            times = deque(maxlen=self.limit)
            self._failures[key] = times
            if len(self._failures) > self.max_keys:
                self._failures.popitem(last=False)
        else:
            self._failures.move_to_end(key)
        if times and now < times[-1]:
            # Another replica's failure, learnt after later ones: keep the order
            # that retry_after and _trim rely on (the last ``limit`` times).
            ordered = sorted([*times, now])[-self.limit :]
            times.clear()
            times.extend(ordered)
            return
        times.append(now)

    def _trim(self, times: deque[datetime], now: datetime) -> None:
        while times and now - times[0] >= self.window:
            times.popleft()
