"""Contract tests of the Stripe adapter (licensing_service.adapters.stripe_api).

The same tests run against two backends: the stateful respx fake
(fixtures.stripe.fake_api.FakeStripe, always) and Stripe's stripe-mock when
STRIPE_MOCK_URL points at one (docker/stripe-mock/compose.yaml). The fake is
stateful, so tests also check what it was sent; stripe-mock is stateless and
schema-checked, so it catches parameters the real API would not accept.
Fault injection (5xx, connection errors, lost answers) is fake-only.
"""

from __future__ import annotations

import asyncio
import os
import warnings
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import pytest
import respx
import stripe

from fixtures.stripe import objects
from fixtures.stripe.fake_api import FakeStripe, parse_form
from licensing_service.adapters.stripe_api import (
    DEFAULT_RETRY_AFTER,
    CheckoutLink,
    CheckoutPrice,
    PortalLink,
    StripeBilling,
    StripeRejected,
    StripeUnavailable,
)
from licensing_service.contract import stripe as contract

T = TypeVar("T")

API_KEY = "sk_test_contract4242424242"
FAKE_BASE = "http://stripe.test"
EMAIL = "till@example.test"
SUCCESS_URL = "https://pospal.example/success?session_id={CHECKOUT_SESSION_ID}"
CANCEL_URL = "https://pospal.example/cancel"
RETURN_URL = "https://pospal.example/account"
MAX_RETRIES = 2
AUTH = {"Authorization": f"Bearer {API_KEY}"}


@dataclass
class Backend:
    name: str
    api_base: str
    fake: FakeStripe | None
    price_id: str
    seed_customer: Callable[[str], str]


@pytest.fixture(autouse=True)
def quiet_stripe(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """No real sleeps, no telemetry; returns the backoff delays the library asked for.

    The library sleeps 0.5 s doubling (jittered, capped at 5 s) between retries
    via ``sleep_async``; recording instead keeps the suite fast and shows the
    retries did back off. Telemetry off keeps the library from writing
    ~/.config/stripe/telemetry_id during the test run.
    """
    delays: list[float] = []

    async def record(self: stripe.HTTPXClient, seconds: float) -> None:
        delays.append(seconds)

    monkeypatch.setattr(stripe.HTTPXClient, "sleep_async", record)
    monkeypatch.setattr(stripe, "enable_telemetry", False)
    return delays


def _stripe_mock_url() -> str:
    url = os.environ.get("STRIPE_MOCK_URL")
    if not url:
        pytest.skip(
            "STRIPE_MOCK_URL is not set (docker compose -f docker/stripe-mock/compose.yaml up "
            "-d; STRIPE_MOCK_URL=http://127.0.0.1:12111)"
        )
    try:
        httpx.get(url, timeout=1.0)
    except httpx.HTTPError as exc:
        pytest.skip(f"stripe-mock is not reachable at {url}: {type(exc).__name__}")
    return url.rstrip("/")


def _stripe_mock_customer(url: str) -> Callable[[str], str]:
    def seed(email: str) -> str:
        response = httpx.post(
            f"{url}/v1/customers",
            data={"email": email},
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=5.0,
        )
        response.raise_for_status()
        return str(response.json()["id"])

    return seed


@pytest.fixture(params=["fake", "stripe-mock"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    if request.param == "stripe-mock":
        url = _stripe_mock_url()
        # stripe-mock keeps no state: any well-formed price id "exists".
        yield Backend("stripe-mock", url, None, "price_contract", _stripe_mock_customer(url))
        return
    with FakeStripe(FAKE_BASE) as fake:
        yield Backend("fake", FAKE_BASE, fake, fake.add_price(), fake.add_customer)


@pytest.fixture
def fake() -> Iterator[FakeStripe]:
    with FakeStripe(FAKE_BASE) as fake:
        yield fake


def run(api_base: str, use: Callable[[StripeBilling], Awaitable[T]], **options: Any) -> T:
    """One event loop per adapter: its httpx client is created, used and closed in it."""

    async def main() -> T:
        billing = StripeBilling(API_KEY, api_base, **{"max_retries": MAX_RETRIES, **options})
        try:
            return await use(billing)
        finally:
            await billing.aclose()

    return asyncio.run(main())


def checkout(api_base: str, price: CheckoutPrice, **options: Any) -> CheckoutLink:
    return run(
        api_base,
        lambda b: b.create_checkout_session(
            email=EMAIL, price=price, success_url=SUCCESS_URL, cancel_url=CANCEL_URL
        ),
        **options,
    )


def portal(
    api_base: str, customer_id: str | None, name: str | None = "Till", **options: Any
) -> PortalLink:
    return run(
        api_base,
        lambda b: b.create_portal_session(
            stripe_customer_id=customer_id, email=EMAIL, name=name, return_url=RETURN_URL
        ),
        **options,
    )


# -- the contract, on every backend -------------------------------------------------


def test_checkout_with_configured_price(backend: Backend) -> None:
    link = checkout(backend.api_base, CheckoutPrice(price_id=backend.price_id))

    assert link.session_id.startswith("cs_")
    assert link.url.startswith("https://")
    if backend.fake is not None:
        session = backend.fake.checkout_sessions[link.session_id]
        assert session["mode"] == "subscription"
        assert session["url"] == link.url
        assert session["status"] == "open"
        assert session["customer_email"] == EMAIL
        (sent,) = backend.fake.requests_to("POST", "/v1/checkout/sessions")
        assert sent.params["mode"] == "subscription"
        assert sent.params["line_items"] == [{"price": backend.price_id, "quantity": "1"}]
        # Stripe's placeholder goes through untouched; Stripe fills it in on redirect.
        assert sent.params["success_url"] == SUCCESS_URL
        assert sent.params["cancel_url"] == CANCEL_URL


def test_checkout_with_inline_price_data(backend: Backend) -> None:
    link = checkout(backend.api_base, CheckoutPrice(price_id=None))

    assert link.session_id.startswith("cs_")
    assert link.url.startswith("https://")
    if backend.fake is not None:
        (sent,) = backend.fake.requests_to("POST", "/v1/checkout/sessions")
        assert sent.params["mode"] == "subscription"
        assert sent.params["customer_email"] == EMAIL
        assert sent.params["line_items"] == [
            {
                "price_data": {
                    "currency": "eur",
                    "unit_amount": "2000",
                    "recurring": {"interval": "month"},
                    "product_data": {"name": "POSPal subscription"},
                },
                "quantity": "1",
            }
        ]
        session = backend.fake.checkout_sessions[link.session_id]
        assert (session["mode"], session["currency"], session["amount_total"]) == (
            "subscription",
            "eur",
            2000,
        )
        (item,) = backend.fake.checkout_line_items[link.session_id]
        assert item["price"]["recurring"]["interval"] == "month"


def test_portal_for_existing_customer(backend: Backend) -> None:
    customer_id = backend.seed_customer(EMAIL)

    link = portal(backend.api_base, customer_id)

    assert link.customer_id == customer_id
    assert link.created_customer is False
    assert link.url.startswith("https://")
    if backend.fake is not None:
        assert backend.fake.requests_to("POST", "/v1/customers") == []
        (session,) = backend.fake.portal_sessions.values()
        assert (session["customer"], session["return_url"]) == (customer_id, RETURN_URL)
        assert session["url"] == link.url


def test_portal_creates_missing_customer(backend: Backend) -> None:
    link = portal(backend.api_base, None, name="Till Owner")

    assert link.created_customer is True
    assert link.customer_id.startswith("cus_")
    assert link.url.startswith("https://")
    if backend.fake is not None:
        customer = backend.fake.customers[link.customer_id]
        assert (customer["email"], customer["name"]) == (EMAIL, "Till Owner")
        (session,) = backend.fake.portal_sessions.values()
        assert session["customer"] == link.customer_id


def test_stripe_4xx_is_rejected(backend: Backend) -> None:
    # Both backends refuse an interval outside Stripe's enum (stripe-mock by its schema).
    with pytest.raises(StripeRejected) as caught:
        checkout(backend.api_base, CheckoutPrice(price_id=None, interval="fortnight"))

    assert caught.value.status == 400
    assert str(caught.value)
    assert API_KEY not in str(caught.value)
    if backend.fake is not None:
        assert caught.value.code is None or caught.value.code.startswith("parameter")
        assert backend.fake.checkout_sessions == {}


# -- rejections only a stateful Stripe can make -------------------------------------


def test_portal_for_unknown_customer_is_rejected(fake: FakeStripe) -> None:
    with pytest.raises(StripeRejected) as caught:
        portal(FAKE_BASE, "cus_doesnotexist")

    assert caught.value.status == 400
    assert caught.value.code == "resource_missing"
    assert str(caught.value) == "No such customer: 'cus_doesnotexist'"
    assert caught.value.created_customer_id is None
    # A 4xx is final: the library does not retry it.
    assert len(fake.requests) == 1


def test_unknown_price_is_rejected(fake: FakeStripe) -> None:
    with pytest.raises(StripeRejected) as caught:
        checkout(FAKE_BASE, CheckoutPrice(price_id="price_missing"))

    assert (caught.value.status, caught.value.code) == (400, "resource_missing")
    assert "price_missing" in str(caught.value)


def test_one_time_price_in_subscription_mode_is_rejected(fake: FakeStripe) -> None:
    price_id = fake.add_price(interval=None)

    with pytest.raises(StripeRejected, match="recurring price"):
        checkout(FAKE_BASE, CheckoutPrice(price_id=price_id))


def test_wrong_api_key_is_rejected_without_echoing_it() -> None:
    with FakeStripe(FAKE_BASE, api_key="sk_test_therightkey1234") as fake:
        with pytest.raises(StripeRejected) as caught:
            portal(FAKE_BASE, None)
        assert len(fake.requests) == 1

    assert caught.value.status == 401
    # Stripe echoes a masked key ("sk_test_****4242"); the adapter drops even that.
    assert "4242" not in str(caught.value)
    assert "sk_" not in str(caught.value)
    assert str(caught.value).startswith("Invalid API Key provided")


# -- retries, faults and idempotency (fake only) -----------------------------------


def test_5xx_on_every_attempt_is_unavailable_after_bounded_retries(
    fake: FakeStripe, quiet_stripe: list[float]
) -> None:
    fake.fail_next(10, status=503)

    with pytest.raises(StripeUnavailable) as caught:
        checkout(FAKE_BASE, CheckoutPrice(price_id=None))

    assert len(fake.requests) == MAX_RETRIES + 1
    assert caught.value.retry_after == DEFAULT_RETRY_AFTER
    assert "503" in str(caught.value)
    # The library backed off before each retry: at least its 0.5 s floor, at most its 5 s cap.
    assert len(quiet_stripe) == MAX_RETRIES
    assert all(0.5 <= delay <= 5 for delay in quiet_stripe)
    assert fake.checkout_sessions == {}


def test_5xx_retry_after_is_passed_on(fake: FakeStripe) -> None:
    fake.fail_next(10, status=503, retry_after=7)

    with pytest.raises(StripeUnavailable) as caught:
        checkout(FAKE_BASE, CheckoutPrice(price_id=None))

    assert caught.value.retry_after == 7


def test_429_is_unavailable_with_retry_after_and_not_retried(fake: FakeStripe) -> None:
    fake.fail_next(1, status=429, retry_after=12)

    with pytest.raises(StripeUnavailable) as caught:
        checkout(FAKE_BASE, CheckoutPrice(price_id=None))

    assert caught.value.retry_after == 12
    # The library retries 409 and 5xx only; a 429 comes straight back to the caller.
    assert len(fake.requests) == 1


def test_connect_error_is_unavailable(fake: FakeStripe) -> None:
    fake.fail_next(10, status="connect")

    with pytest.raises(StripeUnavailable) as caught:
        portal(FAKE_BASE, None)

    assert "ConnectError" in str(caught.value)
    assert caught.value.retry_after == DEFAULT_RETRY_AFTER
    assert len(fake.requests) == MAX_RETRIES + 1
    assert fake.customers == {}


def test_one_5xx_then_success(fake: FakeStripe, quiet_stripe: list[float]) -> None:
    fake.fail_next(1, status=500)

    link = checkout(FAKE_BASE, CheckoutPrice(price_id=None))

    assert list(fake.checkout_sessions) == [link.session_id]
    assert len(fake.requests) == 2
    assert len(quiet_stripe) == 1


def test_idempotency_key_is_reused_across_retries(fake: FakeStripe) -> None:
    fake.fail_next(1, status=503)

    checkout(FAKE_BASE, CheckoutPrice(price_id=None))
    checkout(FAKE_BASE, CheckoutPrice(price_id=None))

    keys = [request.headers.get("Idempotency-Key") for request in fake.raw_requests]
    assert len(keys) == 3
    assert keys[0] is not None and keys[0] == keys[1]
    # A new call is a new operation: a new key.
    assert keys[2] is not None and keys[2] != keys[0]
    assert len(fake.checkout_sessions) == 2


def test_lost_answer_is_replayed_not_repeated(fake: FakeStripe) -> None:
    # Stripe creates the customer, the answer is lost; the retry carries the same
    # key, so Stripe replays the first answer instead of creating a second customer.
    fake.fail_next(1, status="timeout", path="/v1/customers")

    link = portal(FAKE_BASE, None)

    assert list(fake.customers) == [link.customer_id]
    first, retry = fake.requests_to("POST", "/v1/customers")
    assert first == retry
    customer_posts = [r for r in fake.raw_requests if r.url.path == "/v1/customers"]
    assert len({r.headers["Idempotency-Key"] for r in customer_posts}) == 1


def test_timeout_without_retries_is_unavailable(fake: FakeStripe) -> None:
    fake.fail_next(1, status="timeout")

    with pytest.raises(StripeUnavailable, match="ReadTimeout"):
        checkout(FAKE_BASE, CheckoutPrice(price_id=None), max_retries=0)

    assert len(fake.requests) == 1


def test_portal_failure_after_creating_customer_reports_the_customer(fake: FakeStripe) -> None:
    fake.fail_next(10, status=503, path="/v1/billing_portal/sessions")

    with pytest.raises(StripeUnavailable) as caught:
        portal(FAKE_BASE, None)

    # The customer exists at Stripe now; the caller must keep its id.
    assert list(fake.customers) == [caught.value.created_customer_id]


def test_aclose_twice_does_not_raise(fake: FakeStripe) -> None:
    async def close_twice() -> None:
        billing = StripeBilling(API_KEY, FAKE_BASE)
        await billing.aclose()
        await billing.aclose()

    asyncio.run(close_twice())


def test_adapter_pins_the_contract_api_version(fake: FakeStripe) -> None:
    checkout(FAKE_BASE, CheckoutPrice(price_id=None))

    (request,) = fake.raw_requests
    assert request.headers["Stripe-Version"] == contract.API_VERSION
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"


def test_posts_raise_no_warnings(fake: FakeStripe) -> None:
    # Recorded, not raised: the library would swallow a raised warning as a network error.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        checkout(FAKE_BASE, CheckoutPrice(price_id=None))

    assert [str(w.message) for w in caught] == []


def test_upstream_httpx_client_still_posts_data_as_str(fake: FakeStripe) -> None:
    """Canary for the adapter's _HTTPXClient: when this fails, stripe sends ``content=``
    itself and the subclass can go."""

    async def post_with_upstream_client() -> None:
        client = stripe.HTTPXClient(timeout=5)
        try:
            await client.request_async("post", f"{FAKE_BASE}/v1/customers", AUTH, "email=a%40b.c")
        finally:
            await client.close_async()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        asyncio.run(post_with_upstream_client())

    assert any("content=" in str(w.message) for w in caught)


# -- the fake itself refuses what Stripe refuses -------------------------------------


def _post(path: str, data: dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
    with httpx.Client(base_url=FAKE_BASE) as client:
        return client.post(path, data=data, headers=AUTH if headers is None else headers)


def _error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert error["type"] in ("invalid_request_error", "idempotency_error", "api_error")
    return error


def test_fake_requires_an_api_key(fake: FakeStripe) -> None:
    missing = _post("/v1/customers", {"email": EMAIL}, headers={})
    live = _post(
        "/v1/customers", {"email": EMAIL}, headers={"Authorization": "Bearer sk_live_abcdef123456"}
    )

    assert missing.status_code == 401
    assert _error(missing)["message"].startswith("You did not provide an API key")
    assert live.status_code == 401
    assert "abcdef123456" not in _error(live)["message"]
    assert fake.customers == {}


def test_fake_refuses_subscription_checkout_without_line_items(fake: FakeStripe) -> None:
    response = _post(
        "/v1/checkout/sessions",
        {"mode": "subscription", "success_url": SUCCESS_URL, "customer_email": EMAIL},
    )

    assert response.status_code == 400
    error = _error(response)
    assert (error["code"], error["param"]) == ("parameter_missing", "line_items")
    assert fake.checkout_sessions == {}


@pytest.mark.parametrize(
    ("data", "param"),
    [
        ({"success_url": SUCCESS_URL}, "mode"),
        ({"mode": "subscription"}, "success_url"),
        ({"mode": "subscription", "success_url": "not a url"}, "success_url"),
        ({"mode": "yearly", "success_url": SUCCESS_URL}, "mode"),
        (
            {"mode": "subscription", "success_url": SUCCESS_URL, "line_items[0][quantity]": "1"},
            "line_items[0][price]",
        ),
        (
            {
                "mode": "subscription",
                "success_url": SUCCESS_URL,
                "line_items[0][price_data][currency]": "eur",
                "line_items[0][price_data][unit_amount]": "2000",
                "line_items[0][price_data][product_data][name]": "POSPal",
                "line_items[0][quantity]": "1",
            },
            "line_items",  # no recurring price in subscription mode
        ),
        ({"mode": "subscription", "success_url": SUCCESS_URL, "colour": "blue"}, "colour"),
    ],
)
def test_fake_validates_checkout_like_stripe(
    fake: FakeStripe, data: dict[str, str], param: str
) -> None:
    response = _post("/v1/checkout/sessions", data)

    assert response.status_code == 400
    assert _error(response)["param"] == param
    assert fake.checkout_sessions == {}


def test_fake_portal_requires_an_existing_customer(fake: FakeStripe) -> None:
    missing = _post("/v1/billing_portal/sessions", {"return_url": RETURN_URL})
    unknown = _post("/v1/billing_portal/sessions", {"customer": "cus_nobody"})

    assert missing.status_code == 400
    assert _error(missing)["code"] == "parameter_missing"
    assert unknown.status_code == 400
    assert _error(unknown) == {
        "type": "invalid_request_error",
        "code": "resource_missing",
        "doc_url": "https://stripe.com/docs/error-codes/resource-missing",
        "message": "No such customer: 'cus_nobody'",
        "param": "customer",
    }


def test_fake_honours_idempotency_keys(fake: FakeStripe) -> None:
    key = {**AUTH, "Idempotency-Key": "key-1"}

    first = _post("/v1/customers", {"email": EMAIL}, headers=key)
    again = _post("/v1/customers", {"email": EMAIL}, headers=key)
    other = _post("/v1/customers", {"email": "someone@example.test"}, headers=key)

    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(fake.customers) == 1
    assert other.status_code == 400
    assert _error(other)["type"] == "idempotency_error"


def test_fake_serves_what_it_created_and_404s_the_rest(fake: FakeStripe) -> None:
    customer_id = fake.add_customer(EMAIL, "Till")
    with httpx.Client(base_url=FAKE_BASE, headers=AUTH) as client:
        found = client.get(f"/v1/customers/{customer_id}")
        missing = client.get("/v1/customers/cus_nobody")
        session = client.get("/v1/checkout/sessions/cs_test_nothing")
        unknown = client.get("/v1/charges")

    assert found.status_code == 200
    assert found.json() == fake.customers[customer_id]
    assert missing.status_code == 404
    assert _error(missing)["code"] == "resource_missing"
    assert session.status_code == 404
    assert unknown.status_code == 404
    assert _error(unknown)["message"].startswith("Unrecognized request URL (GET: /v1/charges)")


def test_fake_objects_keep_stripes_key_sets(fake: FakeStripe) -> None:
    link = checkout(FAKE_BASE, CheckoutPrice(price_id=None))
    created = portal(FAKE_BASE, None)

    reference_session = objects.checkout_session(
        id="cs_x", customer=None, subscription=None, email=EMAIL, name=None, created=0
    )
    reference_customer = objects.customer(id="cus_x", email=EMAIL, name=None, created=0)
    assert set(fake.checkout_sessions[link.session_id]) == set(reference_session)
    assert set(fake.customers[created.customer_id]) == set(reference_customer)
    (portal_session,) = fake.portal_sessions.values()
    reference_portal = objects.billing_portal_session(
        id="bps_x", customer="cus_x", created=0, return_url=RETURN_URL
    )
    assert set(portal_session) == set(reference_portal)


def test_fake_parses_stripes_form_encoding() -> None:
    params = parse_form(
        [
            ("mode", "subscription"),
            ("line_items[1][price]", "price_b"),
            ("line_items[0][price_data][recurring][interval]", "month"),
            ("line_items[0][price_data][currency]", "eur"),
            ("metadata[order]", "42"),
            ("expand[]", "customer"),
            ("expand[]", "subscription"),
        ]
    )

    assert params == {
        "mode": "subscription",
        "line_items": [
            {"price_data": {"recurring": {"interval": "month"}, "currency": "eur"}},
            {"price": "price_b"},
        ],
        "metadata": {"order": "42"},
        "expand": ["customer", "subscription"],
    }


def test_fake_installs_into_an_existing_router() -> None:
    fake = FakeStripe("http://127.0.0.1:9/stripe")
    with respx.mock(base_url="http://other.test", assert_all_called=False) as router:
        fake.install(router)
        other = router.get("/ping").respond(204)
        link = checkout("http://127.0.0.1:9/stripe", CheckoutPrice(price_id=None))
        assert httpx.get("http://other.test/ping").status_code == 204

    assert list(fake.checkout_sessions) == [link.session_id]
    assert fake.requests[0].path == "/v1/checkout/sessions"
    assert other.called
