from datetime import UTC, datetime, timedelta

from licensing_service.domain.breaker import BreakerState, CircuitBreaker

T0 = datetime(2026, 5, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def opened() -> CircuitBreaker:
    breaker = CircuitBreaker()
    for _ in range(5):
        assert breaker.allow(T0)
        breaker.record_failure(T0)
    return breaker


def test_four_failures_keep_it_closed_and_a_success_resets() -> None:
    breaker = CircuitBreaker()
    for _ in range(4):
        breaker.record_failure(T0)
    assert breaker.state is BreakerState.CLOSED
    breaker.record_success(T0)
    breaker.record_failure(T0)
    assert breaker.failures == 1 and breaker.state is BreakerState.CLOSED


def test_fifth_consecutive_failure_opens_for_30_seconds() -> None:
    breaker = opened()
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow(at(29.999))
    assert breaker.retry_after_seconds(at(10)) == 20
    assert breaker.next_attempt() == at(30)


def test_half_open_lets_exactly_one_trial_through() -> None:
    breaker = opened()
    assert breaker.allow(at(30))
    assert breaker.state is BreakerState.HALF_OPEN
    assert not breaker.allow(at(30))
    assert not breaker.allow(at(31))


def test_trial_success_closes() -> None:
    breaker = opened()
    breaker.allow(at(30))
    breaker.record_success(at(30))
    assert breaker.state is BreakerState.CLOSED and breaker.failures == 0
    assert breaker.allow(at(30))


def test_trial_failure_reopens_for_another_30_seconds() -> None:
    breaker = opened()
    breaker.allow(at(30))
    breaker.record_failure(at(30))
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow(at(59))
    assert breaker.allow(at(60))


def test_reads_that_succeed_do_not_hide_failing_writes() -> None:
    """A held write lock: writes fail, WAL reads go on; the writes still open it."""
    breaker = CircuitBreaker()
    for _ in range(5):
        breaker.record_failure(T0, wrote=True)
        if breaker.state is BreakerState.CLOSED:
            breaker.record_success(T0, wrote=False)
    assert breaker.state is BreakerState.OPEN
    assert breaker.failures == 5


def test_a_read_winning_the_trial_closes_but_the_next_failed_write_reopens() -> None:
    breaker = CircuitBreaker()
    for _ in range(5):
        breaker.record_failure(T0, wrote=True)
    assert breaker.allow(at(30))
    breaker.record_success(at(30), wrote=False)
    assert breaker.state is BreakerState.CLOSED
    breaker.record_failure(at(31), wrote=True)
    assert breaker.state is BreakerState.OPEN  # at once, not after five more
    assert breaker.allow(at(61))
    breaker.record_success(at(61), wrote=True)
    assert breaker.state is BreakerState.CLOSED and breaker.failures == 0
    assert not breaker.writes_failing


def test_read_failures_are_reset_by_a_read_success() -> None:
    breaker = CircuitBreaker()
    for _ in range(4):
        breaker.record_failure(T0, wrote=False)
    breaker.record_success(T0, wrote=False)
    assert breaker.failures == 0 and breaker.state is BreakerState.CLOSED


def test_slow_calls_count_as_failures_only_when_judged() -> None:
    judged = CircuitBreaker(slow_call_s=0.015)
    for _ in range(4):
        judged.record_success(T0, elapsed_s=0.040)
    assert judged.state is BreakerState.CLOSED and judged.failures == 4
    judged.record_success(T0, elapsed_s=0.001)  # a fast call resets the count
    assert judged.failures == 0
    for _ in range(5):
        judged.record_success(T0, elapsed_s=0.015)  # at the threshold is slow
    assert judged.state is BreakerState.OPEN
    # A slow failure says nothing about writes: a fast read clears it again.
    assert not judged.writes_failing
    unjudged = CircuitBreaker()
    for _ in range(10):
        unjudged.record_success(T0, elapsed_s=60.0)
    assert unjudged.state is BreakerState.CLOSED and unjudged.failures == 0


def test_a_slow_half_open_trial_reopens() -> None:
    breaker = opened()
    breaker.slow_call_s = 0.015
    assert breaker.allow(at(30))
    breaker.record_success(at(30), elapsed_s=0.5)
    assert breaker.state is BreakerState.OPEN and breaker.next_attempt() == at(60)
    assert breaker.allow(at(60))
    breaker.record_success(at(60), elapsed_s=0.002)
    assert breaker.state is BreakerState.CLOSED
