"""The fault holder and its decorators, with an injected sleep (no real waiting)."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import pytest

from licensing_service.adapters.memory import MemoryStore
from licensing_service.contract.faults import (
    DbFault,
    EmailFault,
    FaultsRequest,
    StripeFault,
    WebhookFault,
    fault_names,
)
from licensing_service.domain.breaker import BreakerState, CircuitBreaker
from licensing_service.service.errors import (
    BreakerOpen,
    DatabaseUnavailable,
    InvalidRequest,
    StorageUnavailable,
    StripeUnavailable,
)
from licensing_service.service.faults import (
    MAX_PENDING_FAIL_ONCE,
    DbFaults,
    Faults,
    FaultyBillingApi,
    FaultyTransport,
    InjectedFailure,
)
from licensing_service.service.guard import StoreGuard
from licensing_service.service.outbox import DeliveryError
from licensing_service.service.ports import CheckoutLink, CheckoutPrice, PortalLink, QueuedEmail

NOW = datetime(2026, 6, 1, tzinfo=UTC)
PRICE = CheckoutPrice(price_id=None, unit_amount=2000, currency="eur")


class Sleeps:
    """Records what would have been slept."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)

    async def wait(self, seconds: float) -> None:
        self.seconds.append(seconds)


class Lock:
    def __init__(self, fails: bool = False) -> None:
        self.held = False
        self.fails = fails
        self.takes = 0

    def hold(self) -> None:
        if self.fails:
            raise StorageUnavailable("database is locked")
        self.takes += 1
        self.held = True

    def release(self) -> None:
        self.held = False


class Billing:
    def __init__(self) -> None:
        self.calls = 0
        self.closed = False

    async def create_checkout_session(
        self, *, email: str, price: CheckoutPrice, success_url: str, cancel_url: str
    ) -> CheckoutLink:
        self.calls += 1
        return CheckoutLink("cs_1", "https://checkout.example/cs_1")

    async def create_portal_session(
        self, *, stripe_customer_id: str | None, email: str, name: str | None, return_url: str
    ) -> PortalLink:
        self.calls += 1
        return PortalLink("https://portal.example", "cus_1", created_customer=False)

    async def aclose(self) -> None:
        self.closed = True


class Transport:
    def __init__(self) -> None:
        self.sent = 0

    async def send(self, email: QueuedEmail, subject: str, text: str) -> str:
        self.sent += 1
        return f"msg_{self.sent}"


def holder(lock: Lock | None = None, timeout_ms: int = 300) -> tuple[Faults, Sleeps]:
    sleeps = Sleeps()
    return Faults(DbFaults(timeout_ms, sleep=sleeps), lock or Lock()), sleeps


# ------------------------------------------------------------------ the holder


def test_apply_replaces_named_targets_and_leaves_the_others() -> None:
    faults, _ = holder()
    faults.apply(FaultsRequest(db=DbFault(errors=True), email=EmailFault(errors=True)))
    view = faults.apply(FaultsRequest(db=DbFault(latency_ms=5)))
    assert view.db == DbFault(latency_ms=5)  # replaced, errors off again
    assert view.email == EmailFault(errors=True)  # not named: kept
    assert view.active == ["db.latency_ms", "email.errors"]
    assert faults.apply(FaultsRequest(clear=True)).active == []


def test_clear_comes_first_so_a_request_can_clear_and_set() -> None:
    faults, _ = holder()
    faults.apply(FaultsRequest(email=EmailFault(errors=True)))
    view = faults.apply(FaultsRequest(clear=True, stripe=StripeFault(timeout=True)))
    assert view.active == ["stripe.timeout"]


def test_fail_once_is_added_to_what_is_pending_and_consumed_once() -> None:
    faults, _ = holder()
    faults.apply(FaultsRequest(webhook=WebhookFault(reject=True, fail_once=["evt_a"])))
    view = faults.apply(FaultsRequest(webhook=WebhookFault(fail_once=["evt_b"])))
    assert view.webhook == WebhookFault(reject=False, fail_once=["evt_a", "evt_b"])
    with pytest.raises(InjectedFailure):
        faults.check_webhook("evt_a")
    faults.check_webhook("evt_a")  # once only
    faults.check_webhook("evt_other")
    assert faults.view().webhook.fail_once == ["evt_b"]
    assert faults.apply(FaultsRequest(clear=True)).webhook.fail_once == []


def test_too_many_pending_ids_are_refused_naming_the_field() -> None:
    faults, _ = holder()
    ids = [f"evt_{n}" for n in range(MAX_PENDING_FAIL_ONCE)]
    faults.apply(FaultsRequest(webhook=WebhookFault(fail_once=ids)))
    with pytest.raises(InvalidRequest) as refused:
        faults.apply(FaultsRequest(webhook=WebhookFault(fail_once=["one_more"])))
    assert refused.value.problems[0][0] == "webhook.fail_once"
    assert len(faults.view().webhook.fail_once) == MAX_PENDING_FAIL_ONCE
    # A clear drops the pending ids first, so the same request may name new ones.
    cleared = faults.apply(FaultsRequest(clear=True, webhook=WebhookFault(fail_once=["new"])))
    assert cleared.webhook.fail_once == ["new"]


def test_active_names_match_every_fault_name() -> None:
    faults, _ = holder()
    faults.apply(
        FaultsRequest(
            db=DbFault(errors=True, latency_ms=1, lock=True),
            stripe=StripeFault(errors=True, latency_ms=1, timeout=True),
            email=EmailFault(errors=True),
            webhook=WebhookFault(reject=True, fail_once=["evt"]),
        )
    )
    assert faults.active() == sorted(fault_names())
    assert faults.view().active == faults.active()


def test_each_change_is_logged_once_with_the_names(caplog: pytest.LogCaptureFixture) -> None:
    faults, _ = holder()
    with caplog.at_level(logging.INFO, logger="licensing_service.service.faults"):
        faults.apply(FaultsRequest(db=DbFault(errors=True)))
        faults.apply(FaultsRequest(db=DbFault(errors=True)))  # no change: not logged again
        faults.apply(FaultsRequest(clear=True))
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages
    assert "db.errors" in messages[0]
    assert "none" in messages[1]


def test_the_lock_is_taken_once_and_released_on_clear_and_on_close() -> None:
    lock = Lock()
    faults, _ = holder(lock)
    faults.apply(FaultsRequest(db=DbFault(lock=True)))
    faults.apply(FaultsRequest(db=DbFault(lock=True, errors=True)))
    assert lock.held and lock.takes == 1
    faults.apply(FaultsRequest(clear=True))
    assert not lock.held
    faults.apply(FaultsRequest(db=DbFault(lock=True)))
    faults.apply(FaultsRequest(clear=True, db=DbFault(lock=True)))
    assert lock.held and lock.takes == 2  # kept through the clear, not retaken
    faults.close()
    assert not lock.held


def test_a_lock_that_cannot_be_taken_is_503_and_changes_nothing() -> None:
    faults, _ = holder(Lock(fails=True))
    faults.apply(FaultsRequest(email=EmailFault(errors=True)))
    with pytest.raises(DatabaseUnavailable):
        faults.apply(FaultsRequest(clear=True, db=DbFault(lock=True)))
    assert faults.active() == ["email.errors"]


# ------------------------------------------------------------------ database


def test_db_errors_fail_every_unit_of_work_and_the_breaker_counts_them() -> None:
    faults, _ = holder()
    store = MemoryStore(faults=faults.db)
    guard = StoreGuard(store, CircuitBreaker(threshold=3))
    faults.apply(FaultsRequest(db=DbFault(errors=True)))
    for _ in range(2):
        with pytest.raises(DatabaseUnavailable), guard.autocommit(NOW):
            pass
    with pytest.raises(BreakerOpen), guard.autocommit(NOW):  # the third opens it
        pass
    assert guard.breaker.state is BreakerState.OPEN
    assert store.scopes_opened == 0


def test_db_latency_is_slept_before_each_unit_of_work() -> None:
    faults, sleeps = holder(timeout_ms=300)
    store = MemoryStore(faults=faults.db)
    faults.apply(FaultsRequest(db=DbFault(latency_ms=120)))
    with store.autocommit():
        pass
    store.ping()
    assert sleeps.seconds == [0.12, 0.12]


def test_db_latency_beyond_the_timeout_waits_the_timeout_then_fails() -> None:
    faults, sleeps = holder(timeout_ms=300)
    store = MemoryStore(faults=faults.db)
    guard = StoreGuard(store, CircuitBreaker(threshold=5))
    faults.apply(FaultsRequest(db=DbFault(latency_ms=5000)))
    with pytest.raises(DatabaseUnavailable), guard.transaction(NOW):
        pass
    assert sleeps.seconds == [0.3]  # not 5 s
    assert guard.breaker.failures == 1


def test_an_inert_gate_does_nothing() -> None:
    gate = DbFaults()
    assert gate.active is False
    gate.set(DbFault(lock=True))  # the lock acts through its own connection, not here
    assert gate.active is False
    gate.set(DbFault(latency_ms=1))
    assert gate.active is True


# ------------------------------------------------------------------ Stripe


def checkout(api: FaultyBillingApi) -> CheckoutLink:
    return asyncio.run(
        api.create_checkout_session(
            email="a@b.example", price=PRICE, success_url="https://s", cancel_url="https://c"
        )
    )


def portal(api: FaultyBillingApi) -> PortalLink:
    return asyncio.run(
        api.create_portal_session(
            stripe_customer_id=None, email="a@b.example", name=None, return_url="https://r"
        )
    )


def test_stripe_errors_fail_without_calling_stripe() -> None:
    faults, _ = holder()
    inner, sleeps = Billing(), Sleeps()
    api = FaultyBillingApi(inner, faults, timeout_seconds=10, sleep=sleeps.wait)
    assert checkout(api).session_id == "cs_1"
    faults.apply(FaultsRequest(stripe=StripeFault(errors=True)))
    with pytest.raises(StripeUnavailable):
        checkout(api)
    with pytest.raises(StripeUnavailable):
        portal(api)
    assert inner.calls == 1
    assert sleeps.seconds == []


def test_stripe_latency_is_awaited_before_the_call() -> None:
    faults, _ = holder()
    inner, sleeps = Billing(), Sleeps()
    api = FaultyBillingApi(inner, faults, timeout_seconds=10, sleep=sleeps.wait)
    faults.apply(FaultsRequest(stripe=StripeFault(latency_ms=250)))
    assert portal(api).url == "https://portal.example"
    assert sleeps.seconds == [0.25]
    assert inner.calls == 1


@pytest.mark.parametrize("fault", [StripeFault(timeout=True), StripeFault(latency_ms=60_000)])
def test_a_stripe_timeout_waits_the_configured_timeout_then_fails(fault: StripeFault) -> None:
    faults, _ = holder()
    inner, sleeps = Billing(), Sleeps()
    api = FaultyBillingApi(inner, faults, timeout_seconds=7.5, sleep=sleeps.wait)
    faults.apply(FaultsRequest(stripe=fault))
    with pytest.raises(StripeUnavailable):
        checkout(api)
    assert sleeps.seconds == [7.5]
    assert inner.calls == 0


def test_closing_the_decorator_closes_the_client() -> None:
    faults, _ = holder()
    inner = Billing()
    asyncio.run(FaultyBillingApi(inner, faults, timeout_seconds=1).aclose())
    assert inner.closed


# ------------------------------------------------------------------ email


def test_email_errors_are_transient_delivery_errors() -> None:
    faults, _ = holder()
    inner = Transport()
    transport = FaultyTransport(inner, faults)
    email = QueuedEmail(1, "welcome", "a@b.example", None, {}, 0)
    faults.apply(FaultsRequest(email=EmailFault(errors=True)))
    with pytest.raises(DeliveryError) as failed:
        asyncio.run(transport.send(email, "subject", "text"))
    assert failed.value.permanent is False  # the outbox keeps it and retries
    assert inner.sent == 0
    faults.apply(FaultsRequest(email=EmailFault()))
    assert asyncio.run(transport.send(email, "subject", "text")) == "msg_1"
