"""The circuit breaker over HTTP, with a database fault injected on a live server."""

import httpx

from licensing_service.contract import routes
from licensing_service.contract.models import Health, UnifiedError, UnifiedSuccess
from licensing_service.service.licensing import Call
from tests.conftest import Customer, add_customer
from tests.live import LiveServer
from tests.shapes import error_code, shaped

# Every test here runs on SQLite and on PostgreSQL (tests/conftest.py).
STORES = ("sqlite", "postgres")


def validate(client: httpx.Client, c: Customer) -> httpx.Response:
    body = {"operation": "validate", "credentials": {"email": c.email, "token": c.token}}
    return client.post(routes.VALIDATE_UNIFIED, json=body)


def fail_database(client: httpx.Client, failing: bool) -> None:
    view = client.post(routes.HARNESS_FAULTS, json={"db": {"errors": failing}}).json()
    assert view["db"]["errors"] is failing
    assert ("db.errors" in view["active"]) is failing


def breaker_state(client: httpx.Client) -> str:
    return shaped(Health, client.get(routes.HEALTH)).circuitBreaker.state


def open_breaker(client: httpx.Client, c: Customer) -> None:
    fail_database(client, True)
    for attempt in range(5):
        assert breaker_state(client) == "CLOSED", attempt
        assert validate(client, c).status_code == 200  # answered from the snapshot
    assert breaker_state(client) == "OPEN"


def test_full_cycle_closed_open_half_open_closed(make_server) -> None:  # type: ignore[no-untyped-def]
    server: LiveServer = make_server()
    known, unknown = add_customer(server), add_customer(server)
    with httpx.Client(base_url=server.url) as client:
        assert validate(client, known).status_code == 200
        open_breaker(client, known)

        health = client.get(routes.HEALTH)
        assert health.status_code == 503 and health.json()["status"] == "unhealthy"
        assert int(health.headers["retry-after"]) == 30

        degraded = validate(client, known)
        assert degraded.status_code == 200
        body = shaped(UnifiedSuccess, degraded)
        assert body.degraded is True
        assert body.caching is not None and body.caching.duration == 300
        assert body.performance.circuitBreakerState == "OPEN"

        never_seen = validate(client, unknown)
        assert never_seen.status_code == 503
        assert shaped(UnifiedError, never_seen).error.retryable is True
        assert error_code(never_seen) == "CIRCUIT_BREAKER_OPEN"
        assert never_seen.headers["retry-after"] == "30"

        start = {
            "operation": "session",
            "action": "start",
            "credentials": {"email": known.email, "token": known.token, "sessionId": "s1"},
            "device": {"machineFingerprint": "f"},
        }
        write = client.post(routes.VALIDATE_UNIFIED, json=start)
        assert write.status_code == 503 and error_code(write) == "CIRCUIT_BREAKER_OPEN"
        server.clock.advance(20)
        assert client.post(routes.VALIDATE_UNIFIED, json=start).headers["retry-after"] == "10"

        # 30 s after opening, one trial goes through; it fails, so it reopens.
        server.clock.advance(10)
        assert validate(client, known).json()["degraded"] is True
        assert breaker_state(client) == "OPEN"
        # Next window: the database is back, the trial succeeds and closes the breaker.
        fail_database(client, False)
        assert shaped(Health, client.get(routes.HEALTH)).status == "degraded"
        server.clock.advance(30)
        recovered = validate(client, known)
        assert recovered.status_code == 200 and recovered.json()["degraded"] is False
        assert breaker_state(client) == "CLOSED"
        assert client.post(routes.VALIDATE_UNIFIED, json=start).status_code == 200


def test_half_open_lets_one_trial_through_at_a_time(make_server) -> None:  # type: ignore[no-untyped-def]
    server: LiveServer = make_server()
    c = add_customer(server)
    with httpx.Client(base_url=server.url) as client:
        validate(client, c)
        open_breaker(client, c)
        server.clock.advance(30)
        service = server.parts.service
        assert server.run(lambda: service.breaker.allow(server.clock.now())) is True
        assert server.run(lambda: service.breaker.state.value) == "HALF_OPEN"
        # While the trial is out, requests do not reach the database.
        assert validate(client, c).json()["degraded"] is True


def test_suspension_reaches_the_snapshot_in_the_same_step(make_server) -> None:  # type: ignore[no-untyped-def]
    server: LiveServer = make_server()
    c = add_customer(server)
    with httpx.Client(base_url=server.url) as client:
        assert validate(client, c).status_code == 200  # now in the snapshot as active
        server.run(
            lambda: server.parts.service.set_subscription_status(
                Call("req_t", None, server.clock.now()), c.id, "inactive", "payment failed"
            )
        )
        open_breaker_expecting(client, c, 403)
        refused = validate(client, c)
        assert refused.status_code == 403 and error_code(refused) == "SUBSCRIPTION_INACTIVE"
        # ...and reactivation is just as immediate once the database is back.
        fail_database(client, False)
        server.clock.advance(30)
        server.run(
            lambda: server.parts.service.set_subscription_status(
                Call("req_t", None, server.clock.now()), c.id, "active", "invoice paid"
            )
        )
        open_breaker_expecting(client, c, 200)
        assert validate(client, c).json()["degraded"] is True


def open_breaker_expecting(client: httpx.Client, c: Customer, status: int) -> None:
    fail_database(client, True)
    for _ in range(5):
        assert validate(client, c).status_code == status
    assert breaker_state(client) == "OPEN"


def test_audit_entries_written_during_an_outage_survive_it(make_server) -> None:  # type: ignore[no-untyped-def]
    server: LiveServer = make_server()
    c = add_customer(server)
    service = server.parts.service
    with httpx.Client(base_url=server.url) as client:
        validate(client, c)
        open_breaker(client, c)
        assert server.run(lambda: service.flush_audit(server.clock.now())) == 0
        fail_database(client, False)
        server.clock.advance(30)
        # 6 audit entries (1 success + 5 degraded) and the one validation stamp.
        assert server.run(lambda: service.flush_audit(server.clock.now())) == 7
    outcomes = server.run(
        lambda: [
            r[0]
            for r in server.sqlite()
            .connection()
            .execute("SELECT outcome FROM audit_log WHERE customer_id = ? ORDER BY id", (c.id,))
        ]
    )
    assert outcomes == ["success"] + ["degraded"] * 5


def test_a_closed_breaker_reports_database_errors_as_retryable(make_server) -> None:  # type: ignore[no-untyped-def]
    server: LiveServer = make_server()
    c = add_customer(server)
    with httpx.Client(base_url=server.url) as client:
        fail_database(client, True)
        first = validate(client, c)  # never seen: nothing to answer from
        assert first.status_code == 503 and error_code(first) == "DATABASE_ERROR"
        assert "retry-after" in first.headers
        ready = client.get(routes.HEALTH_READY)
        assert ready.status_code == 503
        assert client.get(routes.HEALTH_LIVE).status_code == 200
