"""`/create-checkout-session` and `/create-portal-session` over real HTTP, with
the service calling a stateful fake of Stripe's API (respx at the HTTP edge)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from fixtures.stripe.fake_api import FakeStripe
from licensing_service.contract import routes
from tests.conftest import Customer, add_customer
from tests.live import LiveServer
from tests.routed_stripe import FAKE_BASE, routed_fake_stripe

# Every test here runs on SQLite and on PostgreSQL (tests/conftest.py).
STORES = ("sqlite", "postgres")

KEY = "sk_test_routes_0000"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeStripe]:
    with routed_fake_stripe(monkeypatch, KEY) as fake:
        yield fake


@pytest.fixture
def billing_server(
    make_server: Callable[..., LiveServer], fake: FakeStripe
) -> Iterator[tuple[LiveServer, httpx.Client]]:
    del fake
    server = make_server(stripe_secret_key=KEY, stripe_api_base=FAKE_BASE, stripe_max_retries=1)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        yield server, http


def stripe_id_of(server: LiveServer, customer: Customer) -> Any:
    return server.run(
        lambda: (
            server.sqlite()
            .connection()
            .execute("SELECT stripe_customer_id FROM customers WHERE id = ?", (customer.id,))
            .fetchone()[0]
        )
    )


def test_checkout_creates_a_subscription_session_at_the_configured_price(
    billing_server: tuple[LiveServer, httpx.Client], fake: FakeStripe
) -> None:
    _, http = billing_server
    answer = http.post(routes.CREATE_CHECKOUT_SESSION, json={"email": " New@Till.Example "})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["success"] is True and body["sessionId"].startswith("cs_")
    assert body["url"].startswith("https://")
    session = fake.checkout_sessions[body["sessionId"]]
    assert (session["mode"], session["customer_email"]) == ("subscription", "new@till.example")
    (sent,) = fake.requests_to("POST", "/v1/checkout/sessions")
    params = sent.params
    assert params["line_items"][0]["price_data"]["unit_amount"] == "2000"  # €20/month
    assert params["line_items"][0]["price_data"]["recurring"]["interval"] == "month"
    assert params["line_items"][0]["price_data"]["currency"] == "eur"


def test_portal_creates_the_stripe_customer_once_and_remembers_it(
    billing_server: tuple[LiveServer, httpx.Client], fake: FakeStripe
) -> None:
    server, http = billing_server
    customer = add_customer(server)
    request = {"email": customer.email, "unlockToken": customer.token}
    first = http.post(routes.CREATE_PORTAL_SESSION, json=request)
    assert first.status_code == 200, first.text
    assert first.json()["url"].startswith("https://billing.stripe.com/")
    stored = stripe_id_of(server, customer)
    assert stored in fake.customers
    second = http.post(routes.CREATE_PORTAL_SESSION, json=request)
    assert second.status_code == 200
    assert len(fake.requests_to("POST", "/v1/customers")) == 1  # reused, not re-created
    assert len(fake.portal_sessions) == 2


def test_portal_needs_the_license_credentials(
    billing_server: tuple[LiveServer, httpx.Client], fake: FakeStripe
) -> None:
    server, http = billing_server
    customer = add_customer(server)
    wrong = {"email": customer.email, "unlockToken": "POSPAL-AAAA-BBBB-CCCC-DDDD"}
    answer = http.post(routes.CREATE_PORTAL_SESSION, json=wrong)
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "INVALID_CREDENTIALS"
    assert fake.requests == []  # Stripe never asked


def test_stripe_unreachable_is_503_with_retry_after(
    billing_server: tuple[LiveServer, httpx.Client], fake: FakeStripe
) -> None:
    _, http = billing_server
    fake.fail_next(2, "connect")  # exactly the two attempts stripe_max_retries=1 allows
    answer = http.post(routes.CREATE_CHECKOUT_SESSION, json={"email": "down@till.example"})
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "STRIPE_UNAVAILABLE"
    assert answer.json()["error"]["retryable"] is True
    assert int(answer.headers["retry-after"]) > 0
    # Bounded: both faults were used by that one call, so the next one goes through.
    again = http.post(routes.CREATE_CHECKOUT_SESSION, json={"email": "down@till.example"})
    assert again.status_code == 200, again.text


def test_a_stripe_5xx_is_retried_and_then_succeeds(
    billing_server: tuple[LiveServer, httpx.Client], fake: FakeStripe
) -> None:
    _, http = billing_server
    fake.fail_next(1, 503)
    answer = http.post(routes.CREATE_CHECKOUT_SESSION, json={"email": "flaky@till.example"})
    assert answer.status_code == 200, answer.text
    assert len(fake.requests_to("POST", "/v1/checkout/sessions")) == 2


def test_stripe_refusing_is_502_with_its_message(
    make_server: Callable[..., LiveServer], fake: FakeStripe
) -> None:
    server = make_server(
        stripe_secret_key=KEY, stripe_api_base=FAKE_BASE, stripe_price_id="price_missing"
    )
    with httpx.Client(base_url=server.url, timeout=30) as http:
        answer = http.post(routes.CREATE_CHECKOUT_SESSION, json={"email": "p@till.example"})
    assert answer.status_code == 502
    body = answer.json()
    assert body["error"]["code"] == "STRIPE_ERROR"
    assert "price_missing" in body["error"]["message"]
    assert KEY not in answer.text


def test_without_a_stripe_key_the_routes_say_so(
    make_server: Callable[..., LiveServer],
) -> None:
    server = make_server()
    with httpx.Client(base_url=server.url, timeout=30) as http:
        answer = http.post(routes.CREATE_CHECKOUT_SESSION, json={"email": "k@till.example"})
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "STRIPE_NOT_CONFIGURED"
