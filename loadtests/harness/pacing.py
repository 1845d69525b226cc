"""The open model: iterations start at a constant arrival rate, whatever the responses do.

A closed model (N users, each waiting for its response before the next request) slows
its own arrivals when the service slows, so it under-reports exactly the latency that
matters (coordinated omission). Here iteration ``i`` is due at ``start + i / rate``,
fixed in advance; a slow service only means more iterations in flight. Up to
``max_in_flight`` run at once; one that comes due when all are busy is *dropped* (never
started, like k6's dropped_iterations), and one launched more than ``late_tolerance_s``
after it was due (the load generator itself fell behind) is *late*.

Latency from the intended start ("corrected") is what a user of a system that keeps its
own schedule would see: ``completion - intended``, not ``completion - actual start``.

``ArrivalSchedule`` and ``Pacer`` are pure: the pacer takes its clock, sleep and spawn
as arguments (gevent's in Locust, a simulation in tests), and counts into an
``open_counter.OpenModelCounter``.
``arrival_rate_task`` is the Locust glue.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from loadtests.harness.hdr import histograms_of
from loadtests.harness.model import OpenModelStats
from loadtests.harness.open_counter import OpenModelCounter

if TYPE_CHECKING:
    from locust import User

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ArrivalSchedule:
    """Intended start times: iteration ``i`` at ``start + i / rate`` (seconds)."""

    rate: float  # iterations per second
    start: float

    def __post_init__(self) -> None:
        if not (self.rate > 0 and math.isfinite(self.rate)):
            raise ValueError(f"arrival rate must be a positive number, got {self.rate!r}")

    def at(self, index: int) -> float:
        # Computed from the index, not by adding 1/rate each time: no drift over a long run.
        return self.start + index / self.rate

    def count_within(self, duration_s: float) -> int:
        """How many iterations are due in ``[start, start + duration_s)``."""
        if duration_s <= 0:
            return 0
        count = math.ceil(duration_s * self.rate)
        # The product can land a rounding error above a whole number (0.3 * 10).
        if count > 0 and (count - 1) / self.rate >= duration_s:
            count -= 1
        return count

    def __iter__(self) -> Iterator[float]:
        index = 0
        while True:
            yield self.at(index)
            index += 1


class Pacer:
    """Starts ``iteration(intended)`` at a constant rate, concurrently, for a while.

    ``spawn(job)`` must start ``job`` concurrently (gevent.spawn); ``sleep(s)`` blocks the
    pacer only. Each iteration receives its intended start time on ``clock``. Stats go
    to ``counter`` (shared, e.g. the process's, for reporting) as they happen, and
    ``run`` returns this run's own.
    """

    def __init__(
        self,
        rate: float,
        max_in_flight: int,
        *,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
        spawn: Callable[[Callable[[], None]], object],
        counter: OpenModelCounter | None = None,
        key: str | None = None,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        ArrivalSchedule(rate, 0.0)  # validates the rate now rather than at run time
        self.rate = rate
        self.max_in_flight = max_in_flight
        self.counter = counter if counter is not None else OpenModelCounter()
        self.key = key if key is not None else f"pacer-{id(self)}"
        self.in_flight = 0  # launched and not finished (including not yet running)
        self._clock = clock
        self._sleep = sleep
        self._spawn = spawn

    def run(self, iteration: Callable[[float], None], duration_s: float) -> OpenModelStats:
        """Start every iteration due in the next ``duration_s`` seconds, then return.

        Returns once the last one is started or dropped, not once they have finished.
        """
        schedule = ArrivalSchedule(self.rate, self._clock())
        mine = OpenModelCounter(self.counter.late_tolerance_s)
        counters = (mine, self.counter)
        for counter in counters:
            counter.add_rate(self.key, self.rate)
        for index in range(schedule.count_within(duration_s)):
            intended = schedule.at(index)
            # Sleeping only until the next due time, never for a response: arrivals
            # don't wait for the service. If the pacer wakes late, the backlog is
            # started at once (and counted late), not skipped.
            delay = intended - self._clock()
            if delay > 0:
                self._sleep(delay)
            if self.in_flight >= self.max_in_flight:
                for counter in counters:
                    counter.record_dropped()
                continue
            # Started means launched: counted here, so the stats are complete when the
            # loop ends. A launch's own scheduling delay is not counted as lateness, but
            # the corrected latency (measured from ``intended``) still contains it.
            launched = self._clock()
            for counter in counters:
                counter.record_start(intended, launched)
            self.in_flight += 1
            self._spawn(partial(self._iterate, iteration, intended))
        stats = mine.stats()
        assert stats is not None  # a rate was added above
        return stats

    def _iterate(self, iteration: Callable[[float], None], intended: float) -> None:
        try:
            iteration(intended)
        finally:
            self.in_flight -= 1


def timed_from_intended(
    iteration: Callable[[], None],
    clock: Callable[[], float],
    record: Callable[[float], None],
) -> Callable[[float], None]:
    """Adapt a plain iteration for ``Pacer.run``: after it returns, ``record`` the
    milliseconds from its intended start to now (an iteration that raises records none).
    """

    def timed(intended: float) -> None:
        iteration()
        record((clock() - intended) * 1000.0)

    return timed


def _user_key(user: User) -> str:
    # Unique per paced user across processes and machines, stable across task reruns.
    return f"{socket.gethostname()}:{os.getpid()}:{id(user)}"


def arrival_rate_task(
    user: User,
    rate: float,
    max_in_flight: int,
    iteration: Callable[[], None],
    duration_s: float,
    *,
    name: str,
) -> OpenModelStats:
    """Run ``iteration`` at ``rate`` per second for ``duration_s``, from a Locust task.

    The iterations run in their own greenlets (up to ``max_in_flight``; the user's HTTP
    client must allow that many concurrent requests). Each one's latency from its
    intended start to its return is recorded as the *corrected* latency of ``name``: for
    a one-request iteration, the request's own name; otherwise a name of its own (e.g.
    "checkout iteration"). Service times are recorded as usual through Locust's request
    event. Needs the HDR plugin installed (``hdr.install``), whose report carries the
    iteration accounting to the master. Returns this run's accounting once the last
    iteration has finished; if the user is stopped first, its iterations are killed.
    """
    import gevent
    from gevent.pool import Group

    environment = user.environment
    histograms = histograms_of(environment)

    def record(ms: float) -> None:
        histograms.record_corrected(name, ms)

    timed = timed_from_intended(iteration, time.monotonic, record)

    def guarded(intended: float) -> None:
        # An iteration's exception is reported like a task's (user_error, and the
        # master's exception list); it must not kill the pacer or vanish on stderr.
        try:
            timed(intended)
        except Exception as error:
            log.exception("paced iteration of %s failed", name)
            fire: Any = environment.events.user_error.fire
            fire(user_instance=user, exception=error, tb=error.__traceback__)

    group = Group()
    pacer = Pacer(
        rate,
        max_in_flight,
        clock=time.monotonic,
        sleep=gevent.sleep,
        spawn=group.spawn,
        counter=histograms.open_model,
        key=_user_key(user),
    )
    try:
        stats = pacer.run(guarded, duration_s)
        group.join()  # the last iterations' latencies count too
        return stats
    finally:
        group.kill()  # stopped mid-run: no iteration may keep sending after its user
