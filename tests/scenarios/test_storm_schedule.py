"""The storm's timetable, with no server: due times, outage edges that batches
never cross, retries by Stripe's schedule, giving up past three days, kill points."""

from __future__ import annotations

import random

from fixtures.stripe.retries import STRIPE_LIVE, RetrySchedule
from scenarios.storm_schedule import Batch, Edge, Timetable

NO_JITTER = RetrySchedule(jitter=0)


def drain(table: Timetable, fail: bool = False) -> list[Edge | Batch]:
    """Play the table to its end, moving the clock to each due time."""
    steps: list[Edge | Batch] = []
    while (due := table.next_due()) is not None:
        step = table.take(due)
        steps.append(step)
        if isinstance(step, Batch):
            for index, attempt in step.attempts:
                table.settle(index, attempt, not fail, due)
    return steps


def test_first_deliveries_are_spread_and_taken_a_tick_at_a_time():
    table = Timetable(10, 1000.0, 10.0, NO_JITTER, tick=2.0)
    assert table.next_due() == 1000.0
    first = table.take(1000.0)
    assert first == Batch([(0, 1), (1, 1)])  # due at +0 and +1, not +2
    assert table.pending == 8
    steps = drain(table)
    assert [len(s.attempts) for s in steps if isinstance(s, Batch)] == [2, 2, 2, 2]
    assert table.pending == 0 and table.next_due() is None


def test_the_outage_switches_at_its_edges_and_no_batch_crosses_one():
    table = Timetable(100, 0.0, 100.0, NO_JITTER, tick=7.0, outage=(20.0, 30.0))
    steps = drain(table)
    edges = [s for s in steps if isinstance(s, Edge)]
    assert edges == [Edge(20.0, True), Edge(50.0, False)]
    on, off = steps.index(edges[0]), steps.index(edges[1])
    before = {i for s in steps[:on] if isinstance(s, Batch) for i, _ in s.attempts}
    during = {i for s in steps[on:off] if isinstance(s, Batch) for i, _ in s.attempts}
    assert max(before) == 19 and min(during) == 20 and max(during) == 49


def test_a_failure_is_retried_by_the_schedule_until_the_horizon():
    table = Timetable(1, 0.0, 1.0, NO_JITTER)
    times = []
    while (due := table.next_due()) is not None:
        step = table.take(due)
        assert isinstance(step, Batch)
        [(index, attempt)] = step.attempts
        times.append(due)
        table.settle(index, attempt, False, due)
    assert times == NO_JITTER.offsets()  # 0, 60, 180, 420, ... then every 6 h
    assert table.gave_up == [0] and times[-1] <= 3 * 86_400


def test_jittered_retries_stay_within_their_spread():
    table = Timetable(1, 0.0, 1.0, STRIPE_LIVE, rng=random.Random(5))
    table.take(0.0)
    table.settle(0, 1, False, 0.0)
    due = table.next_due()
    assert due is not None and 54.0 <= due <= 66.0


def test_an_answered_or_forged_delivery_is_not_retried():
    table = Timetable(2, 0.0, 1.0, NO_JITTER, tick=5.0)
    step = table.take(0.0)
    assert isinstance(step, Batch)
    table.settle(0, 1, True, 0.0)
    table.settle(1, 1, False, 0.0, retry=False)
    assert table.next_due() is None and table.gave_up == []


def test_kill_points_fall_evenly_over_the_first_deliveries():
    table = Timetable(100, 0.0, 100.0, NO_JITTER, tick=1.0, kills=3)
    steps = drain(table)
    killed = [s.attempts[0][0] for s in steps if isinstance(s, Batch) and s.kill]
    assert killed == [24, 49, 74]  # the batch holding the 25th, 50th and 75th delivery
