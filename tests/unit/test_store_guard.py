"""Every database path of the service goes through the breaker guard: when
the store fails on that path the breaker counts it, and while the breaker is
open the path does not reach the store at all. Each path is listed here; a
new one belongs in PATHS."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable

import pytest

from licensing_service.contract import stripe as contract
from licensing_service.contract.faults import DbFault
from licensing_service.domain.breaker import BreakerState
from licensing_service.service.errors import LicensingError, Unavailable
from licensing_service.service.licensing import audit_entry
from licensing_service.service.outbox import Deliverer
from licensing_service.service.ports import NewEmail, QueuedEmail
from tests.fakes import BREAKER_THRESHOLD, WEBHOOK_SECRET, Rig, rig

TOKEN = "POSPAL-AAAA-BBBB-CCCC-DDDD"
EMAIL = "till@x.test"


class Transport:
    def __init__(self, during_send: Callable[[], None] = lambda: None) -> None:
        self.during_send = during_send

    async def send(self, email: QueuedEmail, subject: str, text: str) -> str:
        del email, subject, text
        self.during_send()
        return "re_1"


def queue_email(r: Rig) -> None:
    with r.store.transaction() as uow:
        uow.outbox.enqueue(NewEmail("welcome", EMAIL, None, {"name": "Till"}), r.clock.now())


def validate(r: Rig) -> None:
    r.service.validate(r.call(), EMAIL, TOKEN, None, False)


def validate_new_device(r: Rig) -> None:
    # Reads answer, the device switch's write transaction fails.
    r.store.faults.set(DbFault())
    r.store.fail_transactions = True
    r.service.validate(r.call(), EMAIL, TOKEN, "a-new-till", False)


def instant(r: Rig) -> None:
    r.service.instant(r.call(), EMAIL, "cs_1", "a-new-till")


def start_session(r: Rig) -> None:
    r.service.start_session(r.call(), EMAIL, TOKEN, "s-1", "fp", {})


def heartbeat(r: Rig) -> None:
    r.service.heartbeat(r.call(), "s-1")


def end_session(r: Rig) -> None:
    r.service.end_session(r.call(), "s-1")


def set_status(r: Rig) -> None:
    r.service.set_subscription_status(r.call(), 1, "inactive", "test")


def alive_sessions(r: Rig) -> None:
    r.service.alive_sessions(r.clock.now())


def flush_audit(r: Rig) -> None:
    r.service.audit_buffer.add(audit_entry(r.call(), "test", "success", None))
    r.service.flush_audit(r.clock.now())


def claim_emails(r: Rig) -> None:
    asyncio.run(Deliverer(r.service.guard, Transport()).run_once(r.clock.now()))


def record_delivery(r: Rig) -> None:
    # The claim succeeds; the database fails while the email is being sent.
    fault = r.store.faults.fault
    r.store.faults.set(DbFault())

    def fail() -> None:
        r.store.faults.set(fault)

    asyncio.run(Deliverer(r.service.guard, Transport(fail)).run_once(r.clock.now()))


def webhook(r: Rig) -> None:
    body = json.dumps(
        {"id": "evt_1", "type": "ping", "created": 1, "object": "event", "data": {"object": {}}}
    ).encode()
    signature = contract.signature_header(body, WEBHOOK_SECRET, int(r.clock.now().timestamp()))
    r.webhooks.receive(r.call(), body, signature)


PATHS: dict[str, Callable[[Rig], None]] = {
    f.__name__: f
    for f in (
        validate,
        validate_new_device,
        instant,
        start_session,
        heartbeat,
        end_session,
        set_status,
        alive_sessions,
        flush_audit,
        claim_emails,
        record_delivery,
        webhook,
    )
}


def ready(name: str) -> Rig:
    r = rig()
    r.add(EMAIL, TOKEN, stripe_session_id="cs_1")
    if name in ("heartbeat", "end_session"):
        r.service.start_session(r.call(), EMAIL, TOKEN, "s-1", "fp", {})
    if name in ("claim_emails", "record_delivery"):
        queue_email(r)
    return r


def attempt(path: Callable[[Rig], None], r: Rig) -> None:
    # 503s and the like: what matters is what the breaker saw.
    with contextlib.suppress(LicensingError):
        path(r)


@pytest.mark.parametrize("name", sorted(PATHS))
def test_a_store_failure_on_the_path_is_counted_by_the_breaker(name: str) -> None:
    r = ready(name)
    r.store.faults.set(DbFault(errors=True))
    attempt(PATHS[name], r)
    assert r.service.breaker.failures == 1


@pytest.mark.parametrize("name", sorted(PATHS))
def test_an_open_breaker_keeps_the_path_from_the_store(name: str) -> None:
    r = ready(name)
    for _ in range(BREAKER_THRESHOLD):
        r.service.breaker.record_failure(r.clock.now())
    assert r.service.breaker.state is BreakerState.OPEN
    opened = r.store.scopes_opened
    attempt(PATHS[name], r)
    assert r.store.scopes_opened == opened


def test_a_failing_scope_surfaces_as_unavailable_never_as_a_storage_error() -> None:
    r = ready("alive_sessions")
    r.store.faults.set(DbFault(errors=True))
    with pytest.raises(Unavailable):
        alive_sessions(r)
