"""Fault injection over HTTP (``/__harness__/faults``) on a live test-clock
server: each fault on and off, its bad input, and where it shows."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from fixtures.stripe.api_server import DEFAULT_KEY, FakeStripeServer
from fixtures.stripe.fake_api import FakeStripe
from licensing_service.contract import routes
from licensing_service.contract.faults import FaultsView, fault_names
from licensing_service.contract.models import Health, UnifiedError
from licensing_service.service.outbox import DeliveryReport
from tests.conftest import Customer, add_customer
from tests.live import LiveServer
from tests.routed_stripe import FAKE_BASE, routed_fake_stripe
from tests.shapes import error_code, shaped
from tests.stripe_story import five_event_story, license_row, post_event

# Every test here runs on SQLite and on PostgreSQL (tests/conftest.py).
STORES = ("sqlite", "postgres")

KEY = "sk_test_faults_0000"


def faults(http: httpx.Client, body: dict[str, Any]) -> FaultsView:
    answer = http.post(routes.HARNESS_FAULTS, json=body)
    assert answer.status_code == 200, answer.text
    return FaultsView.model_validate(answer.json())


def validate(http: httpx.Client, c: Customer) -> httpx.Response:
    body = {"operation": "validate", "credentials": {"email": c.email, "token": c.token}}
    return http.post(routes.VALIDATE_UNIFIED, json=body)


def start_session(http: httpx.Client, c: Customer) -> httpx.Response:
    """A write: the legacy session start (a BEGIN IMMEDIATE transaction)."""
    body = {
        "email": c.email,
        "token": c.token,
        "machineFingerprint": f"fp-{c.id}",
        "sessionId": f"s-{c.id}-{time.perf_counter_ns()}",
    }
    return http.post(routes.SESSION_START, json=body)


def fault_gauges(http: httpx.Client) -> dict[str, float]:
    gauges = {}
    for line in http.get(routes.METRICS).text.splitlines():
        if line.startswith("licensing_fault_active{"):
            name = line.split('fault="', 1)[1].split('"', 1)[0]
            gauges[name] = float(line.rsplit(" ", 1)[1])
    return gauges


@pytest.fixture
def live(make_server: Callable[..., LiveServer]) -> Iterator[tuple[LiveServer, httpx.Client]]:
    server = make_server(db_timeout_ms=300)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        yield server, http


def test_all_faults_start_off_and_clear_turns_them_off(
    live: tuple[LiveServer, httpx.Client],
) -> None:
    _, http = live
    view = FaultsView.model_validate(http.get(routes.HARNESS_FAULTS).json())
    assert view.active == []
    on = faults(
        http,
        {
            "db": {"latency_ms": 5},
            "stripe": {"errors": True},
            "email": {"errors": True},
            "webhook": {"reject": True, "fail_once": ["evt_a"]},
        },
    )
    assert on.active == [
        "db.latency_ms",
        "email.errors",
        "stripe.errors",
        "webhook.fail_once",
        "webhook.reject",
    ]
    # A target named replaces its fault; the others stay as they are.
    assert faults(http, {"stripe": {"latency_ms": 10}}).active == [
        "db.latency_ms",
        "email.errors",
        "stripe.latency_ms",
        "webhook.fail_once",
        "webhook.reject",
    ]
    assert faults(http, {"clear": True}).active == []
    documented = http.get(routes.OPENAPI).json()["paths"][routes.HARNESS_FAULTS]
    assert set(documented) == {"get", "post"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"bogus": True}, "bogus"),
        ({"db": {"eror": True}}, "db.eror"),
        ({"db": {"errors": "yes"}}, "db.errors"),
        ({"db": {"latency_ms": -1}}, "db.latency_ms"),
        ({"db": {"latency_ms": 60_001}}, "db.latency_ms"),
        ({"db": {"latency_ms": 1.5}}, "db.latency_ms"),
        ({"stripe": {"timeout": 1}}, "stripe.timeout"),
        ({"webhook": {"fail_once": [""]}}, "webhook.fail_once.0"),
        ({"clear": "true"}, "clear"),
        ({}, "body"),
    ],
)
def test_bad_input_is_400_naming_the_field_and_changes_nothing(
    live: tuple[LiveServer, httpx.Client], body: dict[str, Any], field: str
) -> None:
    _, http = live
    answer = http.post(routes.HARNESS_FAULTS, json=body)
    assert answer.status_code == 400, answer.text
    error = UnifiedError.model_validate(answer.json())
    assert field in {f.field for f in error.fieldErrors or []}, answer.text
    assert FaultsView.model_validate(http.get(routes.HARNESS_FAULTS).json()).active == []


def test_db_errors_open_the_breaker_and_validations_are_answered_degraded(
    live: tuple[LiveServer, httpx.Client],
) -> None:
    server, http = live
    known = add_customer(server)
    assert validate(http, known).status_code == 200
    faults(http, {"db": {"errors": True}})
    health = shaped(Health, http.get(routes.HEALTH))
    assert health.status == "unhealthy"
    assert health.faults is not None and health.faults.active == ["db.errors"]
    threshold = server.parts.settings.breaker_threshold
    for _ in range(threshold):
        answered = validate(http, known)
        assert answered.status_code == 200
        assert answered.json()["degraded"] is True
    assert shaped(Health, http.get(routes.HEALTH)).circuitBreaker.state == "OPEN"
    write = start_session(http, known)
    assert write.status_code == 503
    assert write.headers["retry-after"].isdigit()
    faults(http, {"db": {"errors": False}})
    server.clock.advance(server.parts.settings.breaker_open_seconds + 1)
    assert validate(http, known).json().get("degraded") is not True  # the trial closed it
    assert shaped(Health, http.get(routes.HEALTH)).circuitBreaker.state == "CLOSED"


def test_db_latency_slows_every_unit_of_work_and_beyond_the_timeout_fails(
    live: tuple[LiveServer, httpx.Client],
) -> None:
    server, http = live
    known = add_customer(server)
    faults(http, {"db": {"latency_ms": 150}})
    started = time.perf_counter()
    assert validate(http, known).status_code == 200
    assert time.perf_counter() - started >= 0.15
    # Slower than LH_DB_TIMEOUT_MS (300 here): fails after the timeout, not after 5 s.
    faults(http, {"db": {"latency_ms": 5000}})
    started = time.perf_counter()
    failed = start_session(http, known)
    elapsed = time.perf_counter() - started
    assert failed.status_code == 503, failed.text
    assert failed.headers["retry-after"].isdigit()
    assert 0.3 <= elapsed < 2.0, elapsed
    assert server.run(lambda: server.parts.service.breaker.failures) == 1
    faults(http, {"db": {"latency_ms": 0}})
    started = time.perf_counter()
    assert start_session(http, known).status_code == 200
    assert time.perf_counter() - started < 0.15


def test_db_lock_blocks_writes_and_lets_reads_go_on(
    live: tuple[LiveServer, httpx.Client],
) -> None:
    server, http = live
    known, other = add_customer(server), add_customer(server)
    assert faults(http, {"db": {"lock": True}}).active == ["db.lock"]
    started = time.perf_counter()
    blocked = start_session(http, known)
    assert blocked.status_code == 503, blocked.text
    assert time.perf_counter() - started >= 0.3  # it waited the busy timeout
    read = validate(http, other)  # a WAL read goes on beside the held write lock
    assert read.status_code == 200, read.text
    assert read.json().get("degraded") is not True
    assert faults(http, {"db": {"lock": False}}).active == []
    assert start_session(http, known).status_code == 200


def test_webhook_reject_answers_503_before_anything_is_applied(
    live: tuple[LiveServer, httpx.Client],
) -> None:
    server, http = live
    story = five_event_story(seed=31, email="reject@example.test")
    faults(http, {"webhook": {"reject": True}})
    for event in story.events[:2]:
        refused = post_event(http, server, event)
        assert refused.status_code == 503, refused.text
        assert error_code(refused) == "WEBHOOK_UNAVAILABLE"
        assert refused.headers["retry-after"].isdigit()
    # Refused before the signature is read: a forged delivery gets the same 503.
    forged = http.post(routes.WEBHOOK, content=b"{}", headers={"stripe-signature": "t=1,v1=0"})
    assert forged.status_code == 503
    assert license_row(server, story.email) is None
    seen = server.run(
        lambda: (
            server.sqlite()
            .connection()
            .execute("SELECT COUNT(*) FROM webhook_events")
            .fetchone()[0]
        )
    )
    assert seen == 0
    faults(http, {"webhook": {"reject": False}})
    for event in story.events[:2]:
        assert post_event(http, server, event).status_code == 200
    assert license_row(server, story.email) is not None


def test_webhook_fail_once_is_added_to_and_consumed(
    live: tuple[LiveServer, httpx.Client],
) -> None:
    server, http = live
    story = five_event_story(seed=32, email="once@example.test")
    checkout = story.events[1]
    faults(http, {"webhook": {"fail_once": [checkout["id"]]}})
    view = faults(http, {"webhook": {"fail_once": ["evt_other"]}})
    assert view.webhook.fail_once == sorted([checkout["id"], "evt_other"])
    post_event(http, server, story.events[0])
    assert post_event(http, server, checkout).status_code == 500
    assert post_event(http, server, checkout).status_code == 200  # once only
    assert FaultsView.model_validate(http.get(routes.HARNESS_FAULTS).json()).webhook.fail_once == [
        "evt_other"
    ]


def test_email_errors_keep_the_email_queued_until_the_provider_is_back(
    live: tuple[LiveServer, httpx.Client],
) -> None:
    server, http = live
    story = five_event_story(seed=33, email="mail@example.test")
    for event in story.events[:2]:
        assert post_event(http, server, event).status_code == 200

    def deliver() -> DeliveryReport:
        report = server.run_async(lambda: server.parts.deliverer.run_once(server.clock.now()))
        assert isinstance(report, DeliveryReport)
        return report

    faults(http, {"email": {"errors": True}})
    assert deliver() == DeliveryReport(retried=1)
    outbox = http.get(routes.HARNESS_EMAILS, params={"recipient": story.email}).json()["emails"]
    assert [e["delivery_status"] for e in outbox] == ["pending"]
    assert "injected" in outbox[0]["last_error"]
    faults(http, {"email": {"errors": False}})
    server.clock.advance(3600)  # past the backoff
    assert deliver() == DeliveryReport(delivered=1)
    assert deliver() == DeliveryReport()  # sent once


def test_health_and_metrics_show_each_fault(live: tuple[LiveServer, httpx.Client]) -> None:
    _, http = live
    assert fault_gauges(http) == dict.fromkeys(fault_names(), 0.0)
    assert shaped(Health, http.get(routes.HEALTH)).faults is not None
    faults(http, {"email": {"errors": True}, "stripe": {"timeout": True}})
    gauges = fault_gauges(http)
    assert {n for n, v in gauges.items() if v == 1.0} == {"email.errors", "stripe.timeout"}
    health = shaped(Health, http.get(routes.HEALTH))
    assert health.faults is not None
    assert health.faults.active == ["email.errors", "stripe.timeout"]
    assert health.status == "healthy"  # the database is fine
    faults(http, {"clear": True})
    assert set(fault_gauges(http).values()) == {0.0}


def test_without_the_test_clock_there_is_no_fault_anywhere(
    make_server: Callable[..., LiveServer],
) -> None:
    server = make_server(test_clock=False)
    with httpx.Client(base_url=server.url) as http:
        assert http.get(routes.HARNESS_FAULTS).status_code == 404
        assert http.post(routes.HARNESS_FAULTS, json={"clear": True}).status_code == 404
        assert "faults" not in http.get(routes.HEALTH).json()
        assert "licensing_fault_active" not in http.get(routes.METRICS).text
    assert server.parts.faults is None
    assert server.sqlite().faults.active is False


# ------------------------------------------------------------------ Stripe


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeStripe]:
    with routed_fake_stripe(monkeypatch, KEY) as fake:
        yield fake


@pytest.fixture
def billing(
    make_server: Callable[..., LiveServer], fake: FakeStripe
) -> Iterator[tuple[LiveServer, httpx.Client]]:
    del fake
    server = make_server(
        stripe_secret_key=KEY,
        stripe_api_base=FAKE_BASE,
        stripe_max_retries=0,
        stripe_timeout_seconds=0.3,
    )
    with httpx.Client(base_url=server.url, timeout=30) as http:
        yield server, http


def checkout(http: httpx.Client) -> httpx.Response:
    return http.post(routes.CREATE_CHECKOUT_SESSION, json={"email": "buyer@till.example"})


@pytest.mark.parametrize(
    ("fault", "least_seconds"),
    [({"errors": True}, 0.0), ({"timeout": True}, 0.3), ({"latency_ms": 1000}, 0.3)],
)
def test_stripe_faults_answer_checkout_503_with_retry_after(
    billing: tuple[LiveServer, httpx.Client],
    fake: FakeStripe,
    fault: dict[str, Any],
    least_seconds: float,
) -> None:
    server, http = billing
    assert checkout(http).status_code == 200
    calls = len(fake.requests_to("POST", "/v1/checkout/sessions"))
    faults(http, {"stripe": fault})
    started = time.perf_counter()
    refused = checkout(http)
    elapsed = time.perf_counter() - started
    assert refused.status_code == 503, refused.text
    assert error_code(refused) == "STRIPE_UNAVAILABLE"
    assert refused.headers["retry-after"].isdigit()
    assert least_seconds <= elapsed < least_seconds + 1.0
    assert len(fake.requests_to("POST", "/v1/checkout/sessions")) == calls  # never reached
    # Validation does not care about Stripe.
    assert validate(http, add_customer(server)).status_code == 200
    faults(http, {"stripe": {}})
    assert checkout(http).status_code == 200


def test_stripe_latency_under_the_timeout_only_slows_checkout(
    billing: tuple[LiveServer, httpx.Client],
) -> None:
    _, http = billing
    faults(http, {"stripe": {"latency_ms": 150}})
    started = time.perf_counter()
    assert checkout(http).status_code == 200
    assert time.perf_counter() - started >= 0.15


def test_a_harness_service_reaches_the_fake_stripe_over_http(
    make_server: Callable[..., LiveServer],
) -> None:
    """What a rehearsal does across processes: STRIPE_API_BASE and STRIPE_SECRET_KEY
    point the service at ``licensing-harness stripe api``; checkout answers 200
    before the fault, 503 during it and 200 after."""
    with FakeStripeServer() as fake_server:
        server = make_server(
            stripe_secret_key=DEFAULT_KEY,
            stripe_api_base=fake_server.url,
            stripe_max_retries=0,
        )
        with httpx.Client(base_url=server.url, timeout=30) as http:
            before = checkout(http)
            assert before.status_code == 200, before.text
            assert fake_server.fake is not None
            assert len(fake_server.fake.requests_to("POST", "/v1/checkout/sessions")) == 1
            faults(http, {"stripe": {"errors": True}})
            assert checkout(http).status_code == 503
            faults(http, {"clear": True})
            assert checkout(http).status_code == 200


def test_under_db_lock_failing_writes_open_the_breaker_though_reads_succeed(
    live: tuple[LiveServer, httpx.Client],
) -> None:
    server, http = live
    known = add_customer(server)
    assert validate(http, known).status_code == 200
    faults(http, {"db": {"lock": True}})
    threshold = server.parts.settings.breaker_threshold
    for attempt in range(threshold):
        assert shaped(Health, http.get(routes.HEALTH)).circuitBreaker.state == "CLOSED", attempt
        refused = start_session(http, known)
        assert refused.status_code == 503
        assert refused.headers["retry-after"].isdigit()
        read = validate(http, known)  # a WAL read, answered by the database
        assert read.status_code == 200
    assert shaped(Health, http.get(routes.HEALTH)).circuitBreaker.state == "OPEN"
    degraded = validate(http, known)
    assert degraded.status_code == 200 and degraded.json()["degraded"] is True
    started = time.perf_counter()
    fast = start_session(http, known)
    assert fast.status_code == 503 and error_code(fast) == "CIRCUIT_BREAKER_OPEN"
    assert time.perf_counter() - started < 0.3  # no busy wait once open
    faults(http, {"db": {"lock": False}})
    server.clock.advance(server.parts.settings.breaker_open_seconds + 1)
    assert start_session(http, known).status_code == 200  # the trial, a write, closes it
    assert shaped(Health, http.get(routes.HEALTH)).circuitBreaker.state == "CLOSED"
