"""LicensingService on the in-memory store: validation and device sessions,
time moved by hand."""

from __future__ import annotations

from datetime import timedelta

import pytest

from licensing_service.contract.faults import DbFault
from licensing_service.domain import cache_tiers
from licensing_service.domain.breaker import BreakerState
from licensing_service.service.errors import (
    BreakerOpen,
    DatabaseUnavailable,
    InvalidCredentials,
    RateLimited,
    SessionConflict,
    SessionEnded,
    SessionExpired,
    SessionKicked,
    SessionNotFound,
    SubscriptionInactive,
)
from tests.fakes import BREAKER_THRESHOLD, RATE_LIMIT, Rig, rig

TOKEN = "POSPAL-AAAA-BBBB-CCCC-DDDD"
EMAIL = "till@x.test"


@pytest.fixture
def r() -> Rig:
    return rig()


def validate(r: Rig, token: str = TOKEN, email: str = EMAIL, fingerprint: str | None = None):  # type: ignore[no-untyped-def]
    return r.service.validate(r.call(), email, token, fingerprint, False)


# ---------------------------------------------------------------- validate


def test_an_active_license_validates_and_earns_a_longer_tier_next_time(r: Rig) -> None:
    r.add(current_period_end=r.clock.now() + timedelta(days=30))
    first = validate(r)
    assert first.standing.is_active
    assert (first.tier, first.degraded, first.machine_changed) == (
        cache_tiers.CONSERVATIVE,
        False,
        False,
    )
    r.clock.advance(600)
    assert validate(r).tier is cache_tiers.AGGRESSIVE  # validated 10 minutes ago
    assert r.audit_outcomes("validation") == ["success", "success"]


def test_an_inactive_license_is_refused_with_its_subscription_info(r: Rig) -> None:
    r.add(status="inactive")
    with pytest.raises(SubscriptionInactive) as refused:
        validate(r)
    assert refused.value.customer.subscription_status == "inactive"
    assert refused.value.now == r.clock.now()
    assert r.audit_outcomes("validation") == ["inactive"]


def test_a_wrong_token_and_an_unknown_email_are_refused_alike(r: Rig) -> None:
    r.add()
    with pytest.raises(InvalidCredentials):
        validate(r, token="POSPAL-WRON-GWRO-NGWR-ONGW")
    with pytest.raises(InvalidCredentials):
        validate(r, email="nobody@x.test")
    assert r.audit_outcomes("validation") == ["invalid_credentials", "invalid_credentials"]


def test_failed_attempts_are_rate_limited_until_the_window_passes(r: Rig) -> None:
    r.add()
    for _ in range(RATE_LIMIT):
        with pytest.raises(InvalidCredentials):
            validate(r, token="POSPAL-WRON-GWRO-NGWR-ONGW")
    with pytest.raises(RateLimited) as limited:
        validate(r)  # even the right token: the email is blocked
    assert limited.value.retry_after is not None
    assert limited.value.retry_after > 0
    r.clock.advance(limited.value.retry_after)
    assert validate(r).standing.is_active


def test_successful_validations_never_count_towards_the_limit(r: Rig) -> None:
    r.add()
    for _ in range(RATE_LIMIT * 3):
        validate(r)


def open_breaker(r: Rig) -> None:
    r.store.faults.set(DbFault(errors=True))
    for _ in range(BREAKER_THRESHOLD):
        validate(r)  # a license seen before: answered degraded, failure counted
    assert r.service.breaker.state is BreakerState.OPEN


def test_a_known_license_is_answered_degraded_while_the_store_is_down(r: Rig) -> None:
    r.add()
    validate(r)
    open_breaker(r)
    opened = r.store.scopes_opened
    answer = validate(r)
    assert (answer.degraded, answer.tier) == (True, cache_tiers.MINIMAL)
    assert r.store.scopes_opened == opened  # the open breaker kept it from the store
    with pytest.raises(InvalidCredentials):
        validate(r, token="POSPAL-WRON-GWRO-NGWR-ONGW")  # still checks the token


def test_a_slow_database_opens_the_breaker_when_slow_calls_are_judged(r: Rig) -> None:
    r.add()
    validate(r)
    r.service.breaker.slow_call_s = 0.015
    ticks = iter(x * 0.020 for x in range(1000))  # every unit of work takes 20 ms
    r.service.guard.timer = lambda: next(ticks)
    for _ in range(BREAKER_THRESHOLD):
        assert validate(r).degraded is False  # answered by the database, slowly
    assert r.service.breaker.state is BreakerState.OPEN
    opened = r.store.scopes_opened
    assert validate(r).degraded is True  # from the snapshot, without waiting on it
    assert r.store.scopes_opened == opened


def test_an_unseen_license_gets_a_503_while_the_breaker_is_open(r: Rig) -> None:
    r.add()
    r.add("other@x.test", "POSPAL-OTHE-ROTH-EROT-HERO")
    validate(r)
    r.store.faults.set(DbFault(errors=True))
    with pytest.raises(DatabaseUnavailable):
        validate(r, email="other@x.test", token="POSPAL-OTHE-ROTH-EROT-HERO")
    open_breaker(r)
    with pytest.raises(BreakerOpen):
        validate(r, email="other@x.test", token="POSPAL-OTHE-ROTH-EROT-HERO")


def test_the_breaker_closes_after_its_open_time_on_a_successful_trial(r: Rig) -> None:
    r.add()
    validate(r)
    open_breaker(r)
    r.store.faults.set(DbFault())
    r.clock.advance(29)
    assert validate(r).degraded is True
    r.clock.advance(1)
    assert validate(r).degraded is False
    assert r.service.breaker.state is BreakerState.CLOSED


def test_a_suspension_is_never_answered_valid_from_the_degraded_read(r: Rig) -> None:
    customer = r.add()
    validate(r)
    r.service.set_subscription_status(r.call(), customer.id, "inactive", "test")
    r.store.faults.set(DbFault(errors=True))  # the next answer comes from the last-known-good read
    with pytest.raises(SubscriptionInactive):
        validate(r)


def test_a_new_device_is_reported_emailed_and_audited(r: Rig) -> None:
    r.add()
    assert validate(r, fingerprint="till-1").machine_changed is None  # first activation
    assert validate(r, fingerprint="till-1").machine_changed is False
    assert r.emails() == []
    assert validate(r, fingerprint="till-2").machine_changed is True
    assert r.emails() == ["machine_switch"]
    assert r.audit_outcomes("machine_switch") == ["validation from a new device"]
    stored = r.store.tables.customers[1].record.machine_fingerprint
    assert stored is not None
    assert "till-2" not in stored  # only its hash


# ---------------------------------------------------------------- sessions


def start(r: Rig, sid: str, host: str = "till-a", *, takeover: bool = False):  # type: ignore[no-untyped-def]
    return r.service.start_session(
        r.call(), EMAIL, TOKEN, sid, f"fp-{host}", {"hostname": host}, takeover=takeover
    )


def heartbeat(r: Rig, sid: str):  # type: ignore[no-untyped-def]
    return r.service.heartbeat(r.call(), sid, EMAIL, TOKEN)


def test_a_started_session_is_kept_alive_by_heartbeats(r: Rig) -> None:
    r.add()
    granted = start(r, "s-a")
    assert (granted.session_id, granted.takeover, granted.kicked) == ("s-a", False, ())
    r.clock.advance(100)
    assert heartbeat(r, "s-a").last_heartbeat == r.clock.now()
    r.clock.advance(100)  # 200 s after the start, 100 s after the heartbeat
    heartbeat(r, "s-a")
    assert r.service.alive_sessions(r.clock.now()) == 1


def test_a_second_device_conflicts_while_the_first_is_alive(r: Rig) -> None:
    r.add()
    start(r, "s-a")
    r.clock.advance(119)
    with pytest.raises(SessionConflict) as conflict:
        start(r, "s-b", "till-b")
    assert conflict.value.device_info == {"hostname": "till-a"}
    assert conflict.value.last_seen == r.clock.now() - timedelta(seconds=119)


def test_a_takeover_kicks_the_first_device_and_emails(r: Rig) -> None:
    r.add()
    start(r, "s-a")
    granted = start(r, "s-b", "till-b", takeover=True)
    assert (granted.takeover, granted.kicked) == (True, ("s-a",))
    with pytest.raises(SessionKicked):
        heartbeat(r, "s-a")
    heartbeat(r, "s-b")
    assert r.emails() == ["machine_switch"]


def test_a_session_expires_two_minutes_after_its_last_heartbeat(r: Rig) -> None:
    r.add()
    start(r, "s-a")
    r.clock.advance(119)
    heartbeat(r, "s-a")
    r.clock.advance(120)
    with pytest.raises(SessionExpired):
        heartbeat(r, "s-a")
    assert r.store.tables.sessions["s-a"].record.status == "expired"
    granted = start(r, "s-b", "till-b")  # no conflict with a dead session
    assert granted.kicked == ()


def test_an_ended_session_stays_ended(r: Rig) -> None:
    r.add()
    start(r, "s-a")
    ended = r.service.end_session(r.call(), "s-a", EMAIL, TOKEN)
    assert ended.status == "ended"
    with pytest.raises(SessionEnded):
        heartbeat(r, "s-a")
    r.service.end_session(r.call(), "s-a", EMAIL, TOKEN)  # again: already closed, no error
    assert r.audit_outcomes("session_end") == ["success", "already_closed"]
    with pytest.raises(SessionNotFound):
        r.service.end_session(r.call(), "s-none", EMAIL, TOKEN)


def test_another_licenses_session_is_not_revealed(r: Rig) -> None:
    r.add()
    r.add("other@x.test", "POSPAL-OTHE-ROTH-EROT-HERO")
    start(r, "s-a")
    with pytest.raises(SessionNotFound):
        r.service.heartbeat(r.call(), "s-a", "other@x.test", "POSPAL-OTHE-ROTH-EROT-HERO")


def test_a_suspended_license_cannot_heartbeat(r: Rig) -> None:
    customer = r.add()
    start(r, "s-a")
    r.service.set_subscription_status(r.call(), customer.id, "inactive", "test")
    with pytest.raises(SubscriptionInactive):
        heartbeat(r, "s-a")
