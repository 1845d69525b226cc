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
