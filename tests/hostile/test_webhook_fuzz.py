"""The webhook fuzz: hostile deliveries change nothing and never get a 5xx.

The normal suite sends a few hundred; ``LH_FUZZ_WEBHOOKS=N`` sends N (the
figures are in docs/hostile-input.md).
"""

from __future__ import annotations

import json
import os
import random
import time

import httpx
import pytest

from licensing_service.contract import routes
from licensing_service.contract import stripe as contract
from scenarios.hostile_counts import changed_tables, licensing_state, status_counts
from scenarios.hostile_service import Service
from scenarios.hostile_webhooks import fuzz_webhooks, target_now, webhook_cases

REQUESTS = int(os.environ.get("LH_FUZZ_WEBHOOKS", "300"))


def test_hostile_deliveries_are_refused_and_change_nothing(service: Service) -> None:
    emails = [str(c["email"]) for c in service.credentials]
    before, answered_before = licensing_state(service.db), status_counts(service.url)
    result = fuzz_webhooks(service.url, service.webhook_secret, requests=REQUESTS, emails=emails)
    time.sleep(0.2)  # past the audit group-commit interval (50 ms), had anything been queued
    assert result.sent == REQUESTS
    assert result.server_errors == 0, result.statuses
    assert result.accepted == 0, result.statuses
    assert changed_tables(before, licensing_state(service.db)) == {}
    # Every answer was a refusal the service counted: 400, 405 or 413.
    assert set(result.statuses) <= {400, 405, 413}, result.statuses
    assert status_counts(service.url)[500] == answered_before[500]
    # The oversized ones were cut short while still being sent, or answered 413.
    for error in result.transport_errors:
        assert "oversized" in error


def test_no_generated_case_carries_a_signature_the_service_would_accept() -> None:
    secret, now = "whsec_fuzz", 1_780_000_000
    cases = webhook_cases(random.Random(3), secret=secret, now=now, emails=["a@example.test"])
    kinds = set()
    for case, _ in zip(cases, range(3000), strict=False):
        kinds.add(case.kind)
        header = next((v for k, v in case.headers.items() if k.lower() == "stripe-signature"), None)
        with pytest.raises(contract.SignatureError):
            contract.verify_signature(case.body, header, [secret], now)
    assert len(kinds) >= 15  # every shape of forgery came up


def test_the_state_comparison_sees_a_delivery_that_does_change_something(
    service: Service,
) -> None:
    """The check can fail: one genuinely signed event changes the snapshot."""
    before = licensing_state(service.db)
    customer = next(c for c in service.credentials if c["status"] == "active")
    with httpx.Client(timeout=10) as client:
        now = target_now(service.url, client)
        event = {
            "id": f"evt_planted_{now}",
            "object": "event",
            "type": contract.CUSTOMER_DELETED,
            "created": now,
            "livemode": False,
            "data": {
                "object": {"id": "cus_planted", "object": "customer", "email": customer["email"]}
            },
        }
        body = json.dumps(event).encode()
        answer = client.post(
            service.url + routes.WEBHOOK,
            content=body,
            headers={
                "content-type": "application/json",
                contract.SIGNATURE_HEADER: contract.signature_header(
                    body, service.webhook_secret, now
                ),
            },
        )
    assert answer.status_code == 200, answer.text
    assert changed_tables(before, licensing_state(service.db)) != {}
