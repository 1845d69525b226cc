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
