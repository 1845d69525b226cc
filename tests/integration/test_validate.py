from datetime import timedelta

import httpx
import pytest

from licensing_service.contract import routes
from licensing_service.contract.models import UnifiedError, UnifiedSuccess
from tests.conftest import Customer, add_customer
from tests.live import LiveServer
from tests.shapes import error_code, shaped

# Every test here runs on SQLite and on PostgreSQL (tests/conftest.py).
STORES = ("sqlite", "postgres")


def validate(client: httpx.Client, c: Customer, **device: object) -> httpx.Response:
    body: dict[str, object] = {
        "operation": "validate",
        "credentials": {"email": c.email, "token": c.token},
    }
    if device:
        body["device"] = device
    return client.post(routes.VALIDATE_UNIFIED, json=body)


def strategy(response: httpx.Response) -> tuple[str, int]:
    body = shaped(UnifiedSuccess, response)
    assert body.caching is not None
    assert response.headers["cache-control"] == f"private, max-age={body.caching.duration}"
    assert response.headers["x-cache-strategy"] == body.caching.strategy
    return body.caching.strategy, body.caching.duration


def test_success_envelope(client: httpx.Client, customer: Customer) -> None:
    response = validate(client, customer)
    assert response.status_code == 200
    body = shaped(UnifiedSuccess, response)
    assert body.validation is not None and body.validation.valid
    assert body.validation.customer is not None
    assert body.validation.customer.email == customer.email
    assert body.subscription is not None and body.subscription.isActive
    assert body.metadata.apiVersion == "2.0"
    assert body.requestId.startswith("req_")
    assert body.degraded is False
    assert response.headers["x-api-version"] == "2.0"


def test_tiers_follow_the_previous_validation_exactly(
    client: httpx.Client, server: LiveServer, customer: Customer
) -> None:
    assert strategy(validate(client, customer)) == ("conservative", 900)  # never validated
    server.clock.advance(3599)
    assert strategy(validate(client, customer)) == ("aggressive", 3600)
    server.clock.advance(3600)
    assert strategy(validate(client, customer)) == ("moderate", 1800)
    server.clock.advance(86399)
    assert strategy(validate(client, customer)) == ("moderate", 1800)
    server.clock.advance(86400)
    assert strategy(validate(client, customer)) == ("conservative", 900)
    assert strategy(validate(client, customer)) == ("aggressive", 3600)


def test_email_is_case_insensitive(client: httpx.Client, customer: Customer) -> None:
    shouting = Customer(customer.id, customer.email.upper(), customer.token, "")
    assert validate(client, shouting).status_code == 200


@pytest.mark.parametrize("status", ["inactive", "cancelled"])
def test_inactive_license_is_refused_with_the_minimal_tier(
    client: httpx.Client, server: LiveServer, status: str
) -> None:
    c = add_customer(server, status=status)
    response = validate(client, c)
    assert response.status_code == 403
    body = shaped(UnifiedError, response)
    assert body.error.code == "SUBSCRIPTION_INACTIVE"
    assert body.subscriptionInfo is not None and body.subscriptionInfo.status == status
    assert response.headers["cache-control"] == "private, max-age=300"


def test_active_status_with_ended_period_is_expired(
    client: httpx.Client, server: LiveServer
) -> None:
    c = add_customer(server, period_end=timedelta(seconds=10))
    assert validate(client, c).status_code == 200
    server.clock.advance(10)
    response = validate(client, c)
    assert response.status_code == 403
    assert response.json()["subscriptionInfo"]["status"] == "expired"


def test_wrong_token_and_unknown_email_look_the_same(
    client: httpx.Client, customer: Customer
) -> None:
    wrong = validate(
        client, Customer(customer.id, customer.email, "POSPAL-AAAA-AAAA-AAAA-AAAA", "")
    )
    unknown = validate(client, Customer(0, "nobody@example.test", customer.token, ""))
    for response in (wrong, unknown):
        assert response.status_code == 401
        assert shaped(UnifiedError, response).error.code == "INVALID_CREDENTIALS"
        assert response.headers["cache-control"] == "no-store"
    assert wrong.json()["error"] == unknown.json()["error"]


def test_fingerprint_changes_are_reported_and_emailed(
    client: httpx.Client, server: LiveServer, customer: Customer
) -> None:
    first = validate(client, customer, machineFingerprint="till-A-serial-123")
    assert first.json()["session"]["machineChanged"] is None  # first activation
    same = validate(client, customer, machineFingerprint="till-A-serial-123")
    assert same.json()["session"]["machineChanged"] is False
    moved = validate(
        client, customer, machineFingerprint="till-B-serial-456", deviceInfo={"hostname": "till-b"}
    )
    assert moved.json()["session"]["machineChanged"] is True
    assert moved.json()["session"]["deviceInfo"]["current"] == "till-b"
    skipped = validate(client, customer, machineFingerprint="till-C", skipMachineUpdate=True)
    assert skipped.json()["session"]["machineChanged"] is False
    emails = client.get(routes.HARNESS_EMAILS).json()["emails"]
    switches = [e for e in emails if e["customer_id"] == customer.id]
    assert [e["email_type"] for e in switches] == ["machine_switch"]


def test_raw_fingerprints_never_reach_the_database(
    client: httpx.Client, server: LiveServer, customer: Customer
) -> None:
    raw = "RAW-FINGERPRINT-7d1c0c2e"
    validate(client, customer, machineFingerprint=raw)
    start = {
        "operation": "session",
        "action": "start",
        "credentials": {"email": customer.email, "token": customer.token, "sessionId": "s-raw"},
        "device": {"machineFingerprint": raw},
    }
    assert client.post(routes.VALIDATE_UNIFIED, json=start).status_code == 200
    server.run(lambda: server.parts.service.flush_audit(server.clock.now()))
    db = server.db_path
    stored = b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))
    assert raw.encode() not in stored


def test_instant_validation(client: httpx.Client, server: LiveServer, customer: Customer) -> None:
    body = {
        "operation": "instant",
        "credentials": {"email": customer.email, "stripeSessionId": customer.stripe_session_id},
        "device": {"machineFingerprint": "fp"},
    }
    response = client.post(routes.VALIDATE_UNIFIED, json=body)
    assert response.status_code == 200
    parsed = shaped(UnifiedSuccess, response)
    assert parsed.subscription is not None
    assert parsed.subscription.unlockToken == customer.token
    assert strategy(response) == ("aggressive", 3600)

    body["credentials"]["stripeSessionId"] = "cs_wrong"  # type: ignore[index]
    assert error_code(client.post(routes.VALIDATE_UNIFIED, json=body)) == "INVALID_CREDENTIALS"

    lapsed = add_customer(server, status="inactive")
    body["credentials"] = {"email": lapsed.email, "stripeSessionId": lapsed.stripe_session_id}
    response = client.post(routes.VALIDATE_UNIFIED, json=body)
    assert response.status_code == 404 and error_code(response) == "NO_VALID_SUBSCRIPTION"


def test_every_validation_is_audited(
    client: httpx.Client, server: LiveServer, customer: Customer
) -> None:
    validate(client, customer)
    validate(client, Customer(customer.id, customer.email, "POSPAL-BAD", ""))
    server.run(lambda: server.parts.service.flush_audit(server.clock.now()))
    rows = server.run(
        lambda: (
            server.sqlite()
            .connection()
            .execute(
                "SELECT action, outcome, request_id, client_address FROM audit_log"
                " WHERE customer_id = ? ORDER BY id",
                (customer.id,),
            )
            .fetchall()
        )
    )
    assert [(a, o) for a, o, _, _ in rows] == [
        ("validation", "success"),
        ("validation", "invalid_credentials"),
    ]
    assert all(rid.startswith("req_") and addr == "127.0.0.1" for _, _, rid, addr in rows)
