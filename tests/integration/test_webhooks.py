"""Webhooks over real HTTP: applied once, in any order, with no grace."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import httpx
import pytest

from licensing_service.adapters.sqltime import to_db
from licensing_service.contract import routes
from licensing_service.contract import stripe as contract
from tests.conftest import Customer
from tests.live import LiveServer
from tests.stripe_story import (
    MONTH,
    emails_for,
    five_event_story,
    license_row,
    post_event,
)

# Every test here runs on SQLite and on PostgreSQL (tests/conftest.py).
STORES = ("sqlite", "postgres")

EXPECTED_EMAILS = ("reactivation", "suspension", "welcome")


@pytest.fixture
def http(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def count(server: LiveServer, sql: str, *params: Any) -> int:
    return int(server.run(lambda: server.sqlite().connection().execute(sql, params).fetchone()[0]))


def validate(http: httpx.Client, email: str, token: str) -> httpx.Response:
    body = {"operation": "validate", "credentials": {"email": email, "token": token}}
    return http.post(routes.VALIDATE_UNIFIED, json=body)


def token_of(server: LiveServer, email: str) -> str:
    return str(
        server.run(
            lambda: (
                server.sqlite()
                .connection()
                .execute("SELECT unlock_token FROM customers WHERE email = ?", (email,))
                .fetchone()[0]
            )
        )
    )


def test_every_order_of_a_five_event_story_converges(
    server: LiveServer, http: httpx.Client
) -> None:
    finals = set()
    for n, order in enumerate(itertools.permutations(range(5))):
        story = five_event_story(seed=1000 + n, email=f"perm-{n}@example.test")
        for index in order:
            assert post_event(http, server, story.events[index]).status_code == 200
        status, period_end, failures, cus, sub = license_row(server, story.email) or ()
        assert (cus, sub) == (story.cus, story.sub), order
        kinds = tuple(kind for kind, _ in emails_for(server, story.email))
        finals.add((status, period_end, failures, kinds))
    # 120 orders, one outcome: active, paid to the end of month two, one failure.
    assert len(finals) == 1, finals
    status, period_end, failures, kinds = finals.pop()
    assert (status, failures, kinds) == ("active", 1, EXPECTED_EMAILS)
    assert period_end == to_db(server.clock.now() + timedelta(seconds=2 * MONTH))


def test_one_event_delivered_100_times_at_once_has_one_effect(
    server: LiveServer, http: httpx.Client
) -> None:
    story = five_event_story(seed=7, email="storm@example.test")
    for event in story.events[:2]:  # sign-up: a license exists
        assert post_event(http, server, event).status_code == 200
    failed = story.events[2]  # invoice.payment_failed
    body = json.dumps(failed).encode()
    now = int(server.clock.now().timestamp())
    secret = server.parts.settings.webhook_secrets()[0]
    headers = {contract.SIGNATURE_HEADER: contract.signature_header(body, secret, now)}
    audits_before = count(server, "SELECT COUNT(*) FROM audit_log WHERE action = 'status_change'")

    def deliver(_: int) -> tuple[int, str]:
        with httpx.Client(base_url=server.url, timeout=30) as own:
            response = own.post(routes.WEBHOOK, content=body, headers=headers)
        return response.status_code, response.json()["outcome"]

    with ThreadPoolExecutor(max_workers=32) as pool:
        answers = list(pool.map(deliver, range(100)))
    assert {status for status, _ in answers} == {200}
    outcomes = sorted(outcome for _, outcome in answers)
    assert outcomes.count("applied") == 1 and outcomes.count("duplicate") == 99
    status, _, failures, _, _ = license_row(server, story.email) or ()
    assert (status, failures) == ("inactive", 1)
    assert (
        emails_for(server, story.email).count(("suspension", f"suspension:{story.failed_invoice}"))
        == 1
    )
    assert [k for k, _ in emails_for(server, story.email)].count("suspension") == 1
    audits = count(server, "SELECT COUNT(*) FROM audit_log WHERE action = 'status_change'")
    assert audits == audits_before + 1
    assert (
        count(server, "SELECT COUNT(*) FROM webhook_events WHERE stripe_event_id = ?", failed["id"])
        == 1
    )


def test_no_grace_payment_failure_and_recovery_are_immediate(
    server: LiveServer, http: httpx.Client
) -> None:
    story = five_event_story(seed=8, email="grace@example.test")
    for event in story.events[:2]:
        post_event(http, server, event)
    token = token_of(server, story.email)
    first = validate(http, story.email, token)
    assert first.status_code == 200
    assert "max-age=900" in first.headers["cache-control"]  # a tier the device may cache
    second = validate(http, story.email, token)
    assert "max-age=3600" in second.headers["cache-control"]

    assert post_event(http, server, story.events[2]).json()["outcome"] == "applied"
    refused = validate(http, story.email, token)  # the very next request, same clock instant
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "SUBSCRIPTION_INACTIVE"

    assert post_event(http, server, story.events[4]).json()["outcome"] == "applied"
    assert validate(http, story.email, token).status_code == 200


def test_no_grace_holds_for_the_breaker_snapshot(
    make_server: Any,
) -> None:
    server: LiveServer = make_server()
    with httpx.Client(base_url=server.url, timeout=30) as http:
        story = five_event_story(seed=9, email="snapshot@example.test")
        for event in story.events[:2]:
            post_event(http, server, event)
        token = token_of(server, story.email)
        assert validate(http, story.email, token).status_code == 200  # snapshot holds "active"
        post_event(http, server, story.events[2])  # payment failed
        http.post(routes.HARNESS_FAULTS, json={"db": {"errors": True}})
        degraded = validate(http, story.email, token)
        assert degraded.status_code == 403, degraded.text
        assert degraded.json()["error"]["code"] == "SUBSCRIPTION_INACTIVE"
        http.post(routes.HARNESS_FAULTS, json={"db": {"errors": False}})


def test_a_handler_failure_is_recorded_answered_5xx_and_the_retry_applies(
    server: LiveServer, http: httpx.Client
) -> None:
    story = five_event_story(seed=10, email="retry@example.test")
    checkout = story.events[1]
    http.post(routes.HARNESS_FAULTS, json={"webhook": {"fail_once": [checkout["id"]]}})
    failed = post_event(http, server, checkout)
    assert failed.status_code == 500
    assert failed.json()["error"]["code"] == "WEBHOOK_HANDLER_FAILED"
    assert failed.json()["error"]["retryable"] is True
    assert license_row(server, story.email) is None  # effects rolled back
    assert emails_for(server, story.email) == []
    row = server.run(
        lambda: (
            server.sqlite()
            .connection()
            .execute(
                "SELECT processing_status, error_message FROM webhook_events"
                " WHERE stripe_event_id = ?",
                (checkout["id"],),
            )
            .fetchone()
        )
    )
    assert row[0] == "failed" and "InjectedFailure" in row[1]

    retried = post_event(http, server, checkout)
    assert (retried.status_code, retried.json()["outcome"]) == (200, "applied")
    assert license_row(server, story.email) is not None
    assert [k for k, _ in emails_for(server, story.email)] == ["welcome"]
    again = post_event(http, server, checkout)
    assert again.json()["idempotent"] is True


def test_a_stuck_processing_claim_is_taken_over_after_its_lease(
    server: LiveServer, http: httpx.Client
) -> None:
    story = five_event_story(seed=11, email="stuck@example.test")
    checkout = story.events[1]
    now = server.clock.now()

    def stuck() -> None:  # as a worker that died mid-way (or POSPal's table) leaves it
        server.sqlite().connection().execute(
            "INSERT INTO webhook_events (stripe_event_id, event_type, processing_status,"
            " received_at, lease_until) VALUES (?, ?, 'processing', ?, ?)",
            (checkout["id"], checkout["type"], to_db(now), to_db(now + timedelta(seconds=60))),
        )

    server.run(stuck)
    busy = post_event(http, server, checkout)
    assert busy.status_code == 409
    assert busy.json()["error"]["code"] == "WEBHOOK_IN_PROGRESS"
    assert int(busy.headers["retry-after"]) > 0
    assert license_row(server, story.email) is None

    server.clock.advance(61)
    taken = post_event(http, server, checkout)
    assert (taken.status_code, taken.json()["outcome"]) == (200, "applied")
    retries = count(
        server, "SELECT retry_count FROM webhook_events WHERE stripe_event_id = ?", checkout["id"]
    )
    assert retries == 1


def test_unhandled_event_types_are_recorded_and_acknowledged(
    server: LiveServer, http: httpx.Client
) -> None:
    event = {
        "id": "evt_unhandled_0001",
        "object": "event",
        "type": "payment_method.attached",
        "created": 1_767_225_600,
        "data": {"object": {"id": "pm_1", "object": "payment_method"}},
    }
    answer = post_event(http, server, event).json()
    assert (answer["unhandled"], answer["idempotent"]) == (True, False)
    assert (
        count(
            server,
            "SELECT COUNT(*) FROM webhook_events"
            " WHERE stripe_event_id = ? AND outcome = 'unhandled'",
            event["id"],
        )
        == 1
    )
    assert post_event(http, server, event).json()["idempotent"] is True


def test_seeded_license_is_linked_by_email_on_its_first_invoice(
    server: LiveServer, http: httpx.Client, customer: Customer
) -> None:
    story = five_event_story(seed=12, email=customer.email)
    failed = story.events[2]
    assert post_event(http, server, failed).json()["outcome"] == "applied"
    status, _, failures, cus, _ = license_row(server, customer.email) or ()
    assert (status, failures, cus) == ("inactive", 1, story.cus)
    assert validate(http, customer.email, customer.token).status_code == 403


def test_no_grace_in_another_process_snapshot(tmp_path: Any) -> None:
    """Two service instances on one database, as `serve --workers 2` runs them:
    B validated the license (its snapshot says active), A applies the payment
    failure; once B touches the database it drops that snapshot entry, so an
    outage that follows cannot make B answer "active"."""
    from tests.conftest import test_settings

    a = LiveServer(test_settings(tmp_path)).start()
    b = LiveServer(test_settings(tmp_path)).start()
    try:
        with (
            httpx.Client(base_url=a.url, timeout=30) as http_a,
            httpx.Client(base_url=b.url, timeout=30) as http_b,
        ):
            story = five_event_story(seed=13, email="workers@example.test")
            for event in story.events[:2]:
                post_event(http_a, a, event)
            token = token_of(a, story.email)
            assert validate(http_b, story.email, token).status_code == 200
            assert b.run(lambda: b.parts.service.view.last_known_good(story.email)) is not None

            assert post_event(http_a, a, story.events[2]).json()["outcome"] == "applied"
            # B's next database access (any request) notices A's commit.
            other = five_event_story(seed=14, email="other@example.test")
            post_event(http_b, b, other.events[1])
            assert b.run(lambda: b.parts.service.view.last_known_good(story.email)) is None

            http_b.post(routes.HARNESS_FAULTS, json={"db": {"errors": True}})
            degraded = validate(http_b, story.email, token)
            assert degraded.status_code in (403, 503), degraded.text
    finally:
        a.stop()
        b.stop()
