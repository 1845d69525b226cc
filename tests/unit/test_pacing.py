"""The open model on virtual time: a tiny cooperative scheduler stands in for gevent.

Tasks are greenlets; ``Sim.sleep`` parks the calling task until the virtual clock
reaches its wake time, and the scheduler always runs the earliest one next, so a run
takes no real time and every timing is exact.
"""

import heapq
import itertools
import json
from collections.abc import Callable
from typing import TypeVar

import pytest
from greenlet import greenlet

from loadtests.harness.model import OpenModelStats
from loadtests.harness.open_counter import OpenModelCounter
from loadtests.harness.pacing import ArrivalSchedule, Pacer, timed_from_intended

T0 = 1000.0
T = TypeVar("T")


class Sim:
    def __init__(self, now: float = T0) -> None:
        self.now = now
        self._queue: list[tuple[float, int, greenlet]] = []
        self._order = itertools.count()
        self._hub = greenlet.getcurrent()

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self._at(self.now + seconds, greenlet.getcurrent())
        self._hub.switch()

    def spawn(self, job: Callable[[], None]) -> None:
        self._at(self.now, greenlet(job, parent=self._hub))

    def _at(self, when: float, task: greenlet) -> None:
        heapq.heappush(self._queue, (when, next(self._order), task))

    def run(self, main: Callable[[], T]) -> T:
        """Run ``main`` and everything it spawns to completion; ``main``'s result."""
        self._hub = greenlet.getcurrent()
        result: list[T] = []
        self.spawn(lambda: result.append(main()))
        while self._queue:
            when, _, task = heapq.heappop(self._queue)
            self.now = max(self.now, when)
            task.switch()
        return result[0]


def pacer(sim: Sim, rate: float, max_in_flight: int = 1000, **kw) -> Pacer:
    return Pacer(rate, max_in_flight, clock=sim.clock, sleep=sim.sleep, spawn=sim.spawn, **kw)


class Recorder:
    """An iteration that takes ``service_s`` and notes when it was due, started, ended."""

    def __init__(self, sim: Sim, service_s: float) -> None:
        self.sim = sim
        self.service_s = service_s
        self.runs: list[tuple[float, float, float]] = []  # (intended, started, finished)
        self.peak_in_flight = 0
        self._in_flight = 0

    def __call__(self, intended: float) -> None:
        started = self.sim.now
        self._in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self._in_flight)
        self.sim.sleep(self.service_s)
        self._in_flight -= 1
        self.runs.append((intended, started, self.sim.now))

    def starts(self) -> list[float]:
        return sorted(started - T0 for _, started, _ in self.runs)


# --- the schedule ---------------------------------------------------------------------


def test_schedule_is_start_plus_index_over_rate() -> None:
    schedule = ArrivalSchedule(rate=4.0, start=T0)
    assert [schedule.at(i) for i in range(5)] == [T0, T0 + 0.25, T0 + 0.5, T0 + 0.75, T0 + 1]
    assert list(itertools.islice(schedule, 3)) == [T0, T0 + 0.25, T0 + 0.5]
    # No drift: the millionth arrival is exactly where the formula puts it.
    assert schedule.at(1_000_000) == T0 + 250_000


@pytest.mark.parametrize(
    ("rate", "duration", "count"),
    [(10.0, 1.0, 10), (10.0, 0.3, 3), (10.0, 0.31, 4), (3.0, 1.0, 3), (7.0, 0.0, 0), (0.5, 3, 2)],
)
def test_schedule_counts_arrivals_due_within_the_duration(
    rate: float, duration: float, count: int
) -> None:
    schedule = ArrivalSchedule(rate=rate, start=T0)
    assert schedule.count_within(duration) == count


@pytest.mark.parametrize("rate", [0.0, -1.0, float("inf"), float("nan")])
def test_schedule_rejects_a_rate_that_is_not_positive(rate: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        ArrivalSchedule(rate=rate, start=T0)


def test_pacer_rejects_no_room_for_iterations() -> None:
    sim = Sim()
    with pytest.raises(ValueError, match="max_in_flight"):
        pacer(sim, 10.0, max_in_flight=0)
    with pytest.raises(ValueError, match="positive"):
        pacer(sim, 0.0)


# --- the pacer ------------------------------------------------------------------------


def test_slow_iterations_do_not_slow_arrivals() -> None:
    sim = Sim()
    iteration = Recorder(sim, service_s=1.0)  # ten times the interval between arrivals

    stats = sim.run(lambda: pacer(sim, 10.0).run(iteration, duration_s=3.0))

    assert iteration.starts() == pytest.approx([i / 10 for i in range(30)])
    assert iteration.peak_in_flight == 10  # a second's worth, all running at once
    assert stats == OpenModelStats(target_rate=10.0, iterations=30, late=0, dropped=0)
    # Every run took its full second: none was cut short, none waited for another.
    assert all(finished - started == pytest.approx(1.0) for _, started, finished in iteration.runs)


def test_the_loop_ends_at_the_duration_without_waiting_for_iterations() -> None:
    sim = Sim()
    iteration = Recorder(sim, service_s=5.0)
    returned_at: list[float] = []

    def main() -> OpenModelStats:
        stats = pacer(sim, 10.0).run(iteration, duration_s=2.5)
        returned_at.append(sim.now)
        return stats

    stats = sim.run(main)

    assert stats.iterations == 25  # due at 0.0 .. 2.4
    assert returned_at == [pytest.approx(T0 + 2.4)]  # the last start, not the last finish
    assert max(iteration.starts()) == pytest.approx(2.4)
    assert max(finished for _, _, finished in iteration.runs) == pytest.approx(T0 + 7.4)


def test_an_iteration_due_when_all_slots_are_busy_is_dropped() -> None:
    sim = Sim()
    # 0.95 s each, 5 slots, 10 due a second: the first five of each second run, and the
    # rest find all five busy (each slot frees 0.95 s after its start).
    iteration = Recorder(sim, service_s=0.95)

    stats = sim.run(lambda: pacer(sim, 10.0, max_in_flight=5).run(iteration, duration_s=2.0))

    assert stats == OpenModelStats(target_rate=10.0, iterations=10, late=0, dropped=10)
    assert iteration.starts() == pytest.approx([0, 0.1, 0.2, 0.3, 0.4, 1, 1.1, 1.2, 1.3, 1.4])
    assert iteration.peak_in_flight == 5


def test_a_stalled_pacer_starts_the_backlog_at_once_and_counts_it_late() -> None:
    sim = Sim()
    iteration = Recorder(sim, service_s=0.1)
    sleeps = itertools.count()

    def stalling_sleep(seconds: float) -> None:
        # The wake-up for the arrival due at 0.2 s comes 0.35 s late (a GC pause, a
        # starved CPU): the arrivals due at 0.2, 0.3, 0.4 and 0.5 s start at 0.55 s.
        sim.sleep(seconds + (0.35 if next(sleeps) == 1 else 0.0))

    paced = Pacer(10.0, 100, clock=sim.clock, sleep=stalling_sleep, spawn=sim.spawn)
    stats = sim.run(lambda: paced.run(iteration, duration_s=1.0))

    assert stats == OpenModelStats(target_rate=10.0, iterations=10, late=4, dropped=0)
    assert iteration.starts() == pytest.approx([0, 0.1, *[0.55] * 4, 0.6, 0.7, 0.8, 0.9])


def test_lateness_has_a_tolerance() -> None:
    counter = OpenModelCounter(late_tolerance_s=0.01)
    assert not counter.record_start(intended=10.0, actual=10.005)
    assert not counter.record_start(intended=10.0, actual=9.99)  # early is not late
    assert counter.record_start(intended=10.0, actual=10.02)
    assert (counter.iterations, counter.late) == (3, 1)


def test_corrected_latency_is_measured_from_the_intended_start() -> None:
    sim = Sim()
    corrected: dict[float, float] = {}  # due (s after start) -> corrected latency (ms)

    def iteration() -> None:
        sim.sleep(0.1)  # the service answers in 100 ms

    def paced_iteration(intended: float) -> None:
        due = round(intended - T0, 6)
        timed_from_intended(iteration, sim.clock, lambda ms: corrected.update({due: ms}))(intended)

    sleeps = itertools.count()

    def stalling_sleep(seconds: float) -> None:
        sim.sleep(seconds + (0.35 if next(sleeps) == 1 else 0.0))

    paced = Pacer(10.0, 100, clock=sim.clock, sleep=stalling_sleep, spawn=sim.spawn)
    sim.run(lambda: paced.run(paced_iteration, duration_s=0.6))

    # Due at 0.2 s, started at 0.55 s, answered at 0.65 s: 450 ms for its user, though
    # the service took 100 ms (measured from the actual start it would say 100).
    assert corrected == pytest.approx(
        {0.0: 100.0, 0.1: 100.0, 0.2: 450.0, 0.3: 350.0, 0.4: 250.0, 0.5: 150.0}
    )


def test_an_iteration_that_raises_records_no_latency() -> None:
    recorded: list[float] = []

    def failing() -> None:
        raise RuntimeError("boom")

    timed = timed_from_intended(failing, lambda: 5.0, recorded.append)
    with pytest.raises(RuntimeError, match="boom"):
        timed(4.0)
    assert recorded == []
    timed_from_intended(lambda: None, lambda: 5.0, recorded.append)(4.0)
    assert recorded == [1000.0]


def test_a_failing_iteration_frees_its_slot() -> None:
    sim = Sim()

    def failing(intended: float) -> None:
        raise RuntimeError("boom")

    paced = pacer(sim, 10.0, max_in_flight=1)
    with pytest.raises(RuntimeError, match="boom"):
        sim.run(lambda: paced.run(failing, duration_s=1.0))
    assert paced.in_flight == 0


# --- accounting -----------------------------------------------------------------------


def test_a_shared_counter_sees_every_run_and_a_rerun_rate_counts_once() -> None:
    sim = Sim()
    shared = OpenModelCounter()
    iteration = Recorder(sim, service_s=0.95)
    paced = pacer(sim, 10.0, max_in_flight=5, counter=shared, key="user-1")
    other = pacer(sim, 5.0, counter=shared, key="user-2")

    first = sim.run(lambda: paced.run(iteration, duration_s=1.0))
    second = sim.run(lambda: paced.run(iteration, duration_s=1.0))
    sim.run(lambda: other.run(iteration, duration_s=1.0))

    assert first == second == OpenModelStats(10.0, iterations=5, late=0, dropped=5)
    assert shared.stats() == OpenModelStats(target_rate=15.0, iterations=15, late=0, dropped=10)


def test_counters_merge_from_their_encoding() -> None:
    worker_a, worker_b, master = OpenModelCounter(), OpenModelCounter(), OpenModelCounter()
    worker_a.add_rate("a", 20.0)
    worker_a.record_start(1.0, 1.0)
    worker_a.record_start(2.0, 2.5)
    worker_b.add_rate("b", 30.0)
    worker_b.record_dropped()

    for worker in (worker_a, worker_b):
        master.merge_encoded(json.loads(json.dumps(worker.encode())))
        worker.reset()
    # A later delta report with the same user's rate does not count it twice.
    worker_a.add_rate("a", 20.0)
    worker_a.record_start(3.0, 3.0)
    master.merge_encoded(worker_a.encode())

    assert master.stats() == OpenModelStats(target_rate=50.0, iterations=3, late=1, dropped=1)
    assert worker_b.stats() is None  # nothing since its reset: a closed-model run has none


def test_late_tolerance_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="late_tolerance_s"):
        OpenModelCounter(late_tolerance_s=-0.1)
