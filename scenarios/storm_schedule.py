"""The storm's timetable, pure: what is due when on the test clock, and what a
failure schedules. No I/O and no clock of its own: the caller passes ``now``
(the service's clock, which the caller moves to :meth:`Timetable.next_due`).

Every attempt (a first delivery or a retry) has a due time; so have the
outage's start and end (its *edges*). :meth:`Timetable.take` returns what is
due at ``now``: an edge first, so the fault switches at exactly its time, else
the batch of attempts due within the next ``tick`` that does not cross an
edge. :meth:`Timetable.settle` records an attempt's answer and, for a failure,
schedules the retry by Stripe's schedule, or gives up past its horizon.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field

from fixtures.stripe.retries import RetrySchedule


@dataclass(frozen=True, slots=True)
class Edge:
    at: float
    on: bool  # the outage begins (True) or ends


@dataclass(frozen=True, slots=True)
class Batch:
    attempts: list[tuple[int, int]]  # (delivery index, attempt number)
    kill: bool = False  # a kill point falls in this batch


@dataclass(slots=True)
class Timetable:
    deliveries: int
    start: float  # the clock when the storm starts
    spread_seconds: float  # first deliveries evenly over this much clock time
    schedule: RetrySchedule
    tick: float = 1.0
    outage: tuple[float, float] | None = None  # (start, length) after `start`
    kills: int = 0  # kill points, evenly over the first deliveries
    rng: random.Random | None = None  # the schedule's jitter
    _heap: list[tuple[float, int, int]] = field(init=False)
    _edges: list[Edge] = field(init=False)
    _kill_at: list[int] = field(init=False)
    _first_at: dict[int, float] = field(init=False, default_factory=dict)
    _firsts: int = field(init=False, default=0)
    gave_up: list[int] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        spacing = self.spread_seconds / max(1, self.deliveries)
        # Built in due order, so already a heap.
        self._heap = [(self.start + i * spacing, i, 1) for i in range(self.deliveries)]
        self._edges = []
        if self.outage is not None and self.outage[1] > 0:
            begin = self.start + self.outage[0]
            self._edges = [Edge(begin, True), Edge(begin + self.outage[1], False)]
        self._kill_at = [self.deliveries * (k + 1) // (self.kills + 1) for k in range(self.kills)]

    @property
    def pending(self) -> int:
        return len(self._heap)

    def next_due(self) -> float | None:
        """The earliest due time, or None when nothing is left (edges after the
        last attempt are dropped: the caller ends any outage still on)."""
        if not self._heap:
            return None
        due = self._heap[0][0]
        return min(due, self._edges[0].at) if self._edges else due

    def take(self, now: float) -> Edge | Batch:
        """What is due at ``now`` (``now`` >= :meth:`next_due`)."""
        if self._edges and self._edges[0].at <= now and self._edges[0].at <= self._heap[0][0]:
            return self._edges.pop(0)
        limit = now + self.tick
        if self._edges:
            limit = min(limit, self._edges[0].at)
        taken: list[tuple[int, int]] = []
        while self._heap and (self._heap[0][0] < limit or not taken):
            _, index, attempt = heapq.heappop(self._heap)
            taken.append((index, attempt))
        kill = False
        for index, attempt in taken:
            if attempt == 1:
                self._first_at[index] = now
                self._firsts += 1
                if self._kill_at and self._firsts >= self._kill_at[0]:
                    self._kill_at.pop(0)
                    kill = True
        return Batch(taken, kill)

    def settle(self, index: int, attempt: int, ok: bool, now: float, retry: bool = True) -> None:
        """An attempt's answer, at ``now``; a failure (with ``retry``) is tried again."""
        if ok or not retry:
            return
        first = self._first_at.get(index, now)
        nxt = self.schedule.next_attempt_at(first, now, attempt, self.rng)
        if nxt is None:
            self.gave_up.append(index)
        else:
            heapq.heappush(self._heap, (nxt, index, attempt + 1))
