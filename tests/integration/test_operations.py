"""Health, probes, metrics, OpenAPI, the harness routes, CORS and rate limits."""

from datetime import UTC, datetime

import httpx
import pytest

from licensing_service.contract import ROUTES, routes
from licensing_service.contract.models import ClockView, Health, Outbox, Probe
from tests.conftest import Customer, add_customer
from tests.live import LiveServer
from tests.shapes import error_code, shaped


def test_health_when_healthy(client: httpx.Client) -> None:
    response = client.get(routes.HEALTH)
    assert response.status_code == 200
    health = shaped(Health, response)
    assert health.status == "healthy"
    assert health.services.database.status == "healthy"
    assert health.services.database.responseTime is not None
    assert health.circuitBreaker.state == "CLOSED" and health.circuitBreaker.failures == 0
    assert health.system.environment == "test"


def test_probes(client: httpx.Client) -> None:
    assert shaped(Probe, client.get(routes.HEALTH_LIVE)).status == "ok"
    assert shaped(Probe, client.get(routes.HEALTH_READY)).status == "ok"


def test_metrics_count_requests_per_route(client: httpx.Client, customer: Customer) -> None:
    body = {
        "operation": "validate",
        "credentials": {"email": customer.email, "token": customer.token},
    }
    client.post(routes.VALIDATE_UNIFIED, json=body)
    client.get("/no-such-route")
    response = client.get(routes.METRICS)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert (
        'licensing_http_requests_total{method="POST",route="/validate-unified",status="200"}'
        in text
    )
    assert 'route="unmatched"' in text  # unknown paths never become new series
    assert "licensing_http_request_duration_seconds_bucket" in text
    assert 'licensing_circuit_breaker_state{state="CLOSED"} 1.0' in text
    assert "licensing_sessions_alive" in text


def test_openapi_describes_every_route(client: httpx.Client) -> None:
    spec = client.get(routes.OPENAPI).json()
    assert spec["openapi"].startswith("3.1")
    for route in ROUTES:
        operation = spec["paths"][route.path][route.method.lower()]
        if route.request is not None:
            ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            assert ref.rsplit("/", 1)[1] in spec["components"]["schemas"]
        assert operation["responses"]


def test_clock_can_be_read_advanced_and_set(client: httpx.Client, server: LiveServer) -> None:
    before = shaped(ClockView, client.get(routes.HARNESS_CLOCK))
    moved = shaped(ClockView, client.post(routes.HARNESS_CLOCK, json={"advance_seconds": 90}))
    assert moved.offset_seconds == pytest.approx(before.offset_seconds + 90)
    target = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
    set_to = shaped(ClockView, client.post(routes.HARNESS_CLOCK, json={"set": target.isoformat()}))
    assert set_to.now == "2027-03-01T12:00:00Z"
    assert server.clock.now() == target
    naive = client.post(routes.HARNESS_CLOCK, json={"set": "2027-03-01T12:00:00"})
    assert naive.status_code == 400
    both = client.post(routes.HARNESS_CLOCK, json={"set": target.isoformat(), "advance_seconds": 1})
    assert both.status_code == 400


def test_outbox_lists_queued_emails(client: httpx.Client) -> None:
    assert isinstance(shaped(Outbox, client.get(routes.HARNESS_EMAILS)).emails, list)


def test_harness_routes_do_not_exist_without_the_flag(make_server) -> None:  # type: ignore[no-untyped-def]
    server: LiveServer = make_server(test_clock=False)
    with httpx.Client(base_url=server.url) as client:
        for path in (routes.HARNESS_CLOCK, routes.HARNESS_EMAILS, routes.HARNESS_FAULTS):
            assert client.get(path).status_code == 404
            assert client.post(path, json={"advance_seconds": 1}).status_code == 404
        paths = client.get(routes.OPENAPI).json()["paths"]
        assert not any(p.startswith("/__harness__") for p in paths)


def test_cors_allowlist(make_server) -> None:  # type: ignore[no-untyped-def]
    server: LiveServer = make_server(cors_origins="https://pos.example")
    with httpx.Client(base_url=server.url) as client:
        allowed = client.options(
            routes.VALIDATE_UNIFIED,
            headers={"Origin": "https://pos.example", "Access-Control-Request-Method": "POST"},
        )
        assert allowed.headers["access-control-allow-origin"] == "https://pos.example"
        refused = client.options(
            routes.VALIDATE_UNIFIED,
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert "access-control-allow-origin" not in refused.headers


def test_failed_attempts_are_limited_per_email_and_per_ip(make_server) -> None:  # type: ignore[no-untyped-def]
    server: LiveServer = make_server(
        rate_limit_email=3, rate_limit_ip=5, rate_limit_window_seconds=600
    )
    victim, bystander = add_customer(server), add_customer(server)

    def attempt(client: httpx.Client, c: Customer, token: str) -> httpx.Response:
        body = {"operation": "validate", "credentials": {"email": c.email, "token": token}}
        return client.post(routes.VALIDATE_UNIFIED, json=body)

    with httpx.Client(base_url=server.url) as client:
        for _ in range(3):
            assert attempt(client, victim, "POSPAL-WRONG").status_code == 401
        limited = attempt(client, victim, victim.token)  # even the right token, for now
        assert limited.status_code == 429 and error_code(limited) == "RATE_LIMITED"
        assert 0 < int(limited.headers["retry-after"]) <= 600
        # Successful validations never count: the bystander is fine...
        assert attempt(client, bystander, bystander.token).status_code == 200
        # ...until this address has failed 5 times in the window.
        for _ in range(2):
            assert attempt(client, bystander, "POSPAL-WRONG").status_code == 401
        assert attempt(client, bystander, bystander.token).status_code == 429
        server.clock.advance(600)
        assert attempt(client, victim, victim.token).status_code == 200
