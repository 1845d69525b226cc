"""The webhook handler on the in-memory store: claims, idempotence, rollback
of a failed handler, takeover of a stuck claim after its lease."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from fixtures.stripe import objects
from licensing_service.contract import stripe as contract
from licensing_service.contract.faults import FaultsRequest, WebhookFault
from licensing_service.service.errors import (
    WebhookHandlerFailed,
    WebhookInProgress,
    WebhookSignatureInvalid,
)
from licensing_service.service.faults import DbFaults, Faults
from licensing_service.service.webhooks import WebhookResult
from tests.fakes import WEBHOOK_SECRET, Rig, rig

EMAIL = "new@x.test"


@pytest.fixture
def r() -> Rig:
    return rig()


def checkout_event(r: Rig, event_id: str = "evt_checkout") -> dict[str, Any]:
    created = int(r.clock.now().timestamp())
    session = objects.checkout_session(
        id="cs_1", customer="cus_1", subscription="sub_1", email=EMAIL, name="New", created=created
    )
    return objects.event(
        id=event_id, type=contract.CHECKOUT_COMPLETED, created=created, data_object=session
    )


def deliver(r: Rig, event: dict[str, Any], secret: str = WEBHOOK_SECRET) -> WebhookResult:
    body = json.dumps(event).encode()
    signature = contract.signature_header(body, secret, int(r.clock.now().timestamp()))
    return r.webhooks.receive(r.call(), body, signature)


def licenses(r: Rig) -> list[str]:
    return [row.record.email for row in r.store.tables.customers.values()]


def test_the_first_delivery_applies_its_effects_in_one_unit(r: Rig) -> None:
    result = deliver(r, checkout_event(r))
    assert result.outcome == "applied"
    assert licenses(r) == [EMAIL]
    assert r.emails() == ["welcome"]
    event = r.store.tables.events["evt_checkout"]
    assert (event.row.status, event.row.outcome) == ("completed", "applied")
    assert event.customer_id == result.customer_id


def test_a_duplicate_is_idempotent(r: Rig) -> None:
    deliver(r, checkout_event(r))
    r.clock.advance(5)
    again = deliver(r, checkout_event(r))
    assert again.outcome == "duplicate"
    assert licenses(r) == [EMAIL]
    assert r.emails() == ["welcome"]


def test_a_failed_handler_rolls_back_and_its_retry_applies(r: Rig) -> None:
    faults = Faults(DbFaults())
    faults.apply(FaultsRequest(webhook=WebhookFault(fail_once=["evt_checkout"])))
    r.webhooks.fail_hook = faults.check_webhook
    with pytest.raises(WebhookHandlerFailed):
        deliver(r, checkout_event(r))
    assert licenses(r) == []  # the license, its email and the claim rolled back together
    assert r.emails() == []
    failed = r.store.tables.events["evt_checkout"]
    assert failed.row.status == "failed"
    assert failed.error == "handler failed: InjectedFailure"
    assert deliver(r, checkout_event(r)).outcome == "applied"
    assert licenses(r) == [EMAIL]
    assert r.store.tables.events["evt_checkout"].row.retry_count == 1


def test_a_stuck_claim_holds_for_its_lease_then_is_taken_over(r: Rig) -> None:
    now = r.clock.now()
    with r.store.transaction() as uow:  # a worker that claimed the event and died
        uow.billing.claim_event(
            "evt_checkout",
            contract.CHECKOUT_COMPLETED,
            now,
            now,
            now + timedelta(seconds=60),
            retry=False,
        )
    r.clock.advance(59)
    with pytest.raises(WebhookInProgress) as busy:
        deliver(r, checkout_event(r))
    assert busy.value.retry_after == 60
    assert licenses(r) == []
    r.clock.advance(1)
    assert deliver(r, checkout_event(r)).outcome == "applied"
    assert licenses(r) == [EMAIL]


def test_a_bad_signature_changes_nothing(r: Rig) -> None:
    with pytest.raises(WebhookSignatureInvalid):
        deliver(r, checkout_event(r), secret="whsec_other")
    assert r.store.tables.events == {}
    assert r.store.scopes_opened == 0


def test_a_payment_failure_suspends_at_once_and_reaches_the_degraded_read(r: Rig) -> None:
    deliver(r, checkout_event(r))
    customer = r.store.tables.customers[1].record
    r.service.validate(
        r.call(), EMAIL, customer.unlock_token, None, False
    )  # seen: kept for outages
    r.clock.advance(60)
    created = int(r.clock.now().timestamp())
    invoice = objects.invoice(
        id="in_1",
        customer="cus_1",
        customer_email=EMAIL,
        customer_name="New",
        subscription="sub_1",
        subscription_item="si_1",
        line_id="il_1",
        status="open",
        created=created,
        period_start=created,
        period_end=created + 30 * 86400,
        attempt_count=1,
        paid_at=None,
    )
    event = objects.event(
        id="evt_failed", type=contract.INVOICE_PAYMENT_FAILED, created=created, data_object=invoice
    )
    assert deliver(r, event).outcome == "applied"
    assert r.store.tables.customers[1].record.subscription_status == "inactive"
    known = r.service.view.last_known_good(EMAIL)
    assert known is not None
    assert known.subscription_status == "inactive"
