"""Legacy /validate and /instant-validate: POSPal's bodies, honest statuses."""

import httpx

from licensing_service.contract import routes
from licensing_service.contract.models import LegacyResult, LegacyValidation
from tests.conftest import Customer, add_customer
from tests.live import LiveServer
from tests.shapes import shaped


def test_valid_license(client: httpx.Client, customer: Customer) -> None:
    body = {"email": customer.email, "token": customer.token, "machineFingerprint": "fp-1"}
    response = client.post(routes.VALIDATE_LEGACY, json=body)
    assert response.status_code == 200
    parsed = shaped(LegacyValidation, response)
    assert parsed.valid is True
    assert parsed.customerId == customer.id
    assert parsed.machineChanged is None  # first activation
    assert parsed.subscriptionInfo is not None and parsed.subscriptionInfo.isActive
    assert response.headers["x-cache-duration"] == "900"
    again = shaped(LegacyValidation, client.post(routes.VALIDATE_LEGACY, json=body))
    assert again.machineChanged is False


def test_bad_token_is_401_in_the_validation_shape(client: httpx.Client, customer: Customer) -> None:
    response = client.post(routes.VALIDATE_LEGACY, json={"email": customer.email, "token": "nope"})
    assert response.status_code == 401
    parsed = shaped(LegacyValidation, response)
    assert parsed.valid is False and parsed.errorCode == "INVALID_CREDENTIALS"


def test_inactive_license_is_not_valid(client: httpx.Client, server: LiveServer) -> None:
    lapsed = add_customer(server, status="inactive")
    response = client.post(
        routes.VALIDATE_LEGACY, json={"email": lapsed.email, "token": lapsed.token}
    )
    assert response.status_code == 403
    parsed = shaped(LegacyValidation, response)
    assert parsed.valid is False and parsed.errorCode == "SUBSCRIPTION_INACTIVE"
    assert parsed.subscriptionInfo is not None and parsed.subscriptionInfo.status == "inactive"


def test_instant_validate(client: httpx.Client, server: LiveServer, customer: Customer) -> None:
    body = {
        "email": customer.email,
        "stripeSessionId": customer.stripe_session_id,
        "machineFingerprint": "fp",
    }
    response = client.post(routes.INSTANT_VALIDATE_LEGACY, json=body)
    assert response.status_code == 200
    parsed = shaped(LegacyValidation, response)
    assert parsed.valid is True and parsed.unlockToken == customer.token
    assert response.headers["cache-control"] == "private, max-age=3600"
    lapsed = add_customer(server, status="cancelled")
    refused = client.post(
        routes.INSTANT_VALIDATE_LEGACY,
        json={
            "email": lapsed.email,
            "stripeSessionId": lapsed.stripe_session_id,
            "machineFingerprint": "fp",
        },
    )
    assert refused.status_code == 404
    assert shaped(LegacyValidation, refused).errorCode == "NO_VALID_SUBSCRIPTION"


def test_missing_field_is_400_in_the_result_shape(client: httpx.Client) -> None:
    response = client.post(routes.VALIDATE_LEGACY, json={"token": "x"})
    assert response.status_code == 400
    parsed = shaped(LegacyResult, response)
    assert parsed.errorCode == "INVALID_REQUEST_FORMAT"
    assert parsed.fieldErrors is not None and parsed.fieldErrors[0].field == "email"
