"""Every route answers bad input with a 4xx naming the field, never a 5xx."""

from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from licensing_service.contract import ROUTES
from licensing_service.contract import routes as paths
from licensing_service.contract.models import LegacyResult, UnifiedError
from tests.conftest import Customer
from tests.shapes import error_code

# Every test here runs on SQLite and on PostgreSQL (tests/conftest.py).
STORES = ("sqlite", "postgres")

# The webhook authenticates before it parses: its bad input is in test_webhook_signatures.
POST_ROUTES = sorted({r.path for r in ROUTES if r.method == "POST" and r.path != paths.WEBHOOK})
# The fault route is left out: a lucky {"db": {"errors": true}} would poison later tests.
FUZZED = [p for p in POST_ROUTES if p != paths.HARNESS_FAULTS]
UNIFIED_SHAPED = {
    paths.VALIDATE_UNIFIED,
    paths.HARNESS_CLOCK,
    paths.HARNESS_FAULTS,
    paths.CREATE_CHECKOUT_SESSION,
    paths.CREATE_PORTAL_SESSION,
}


def fields_named(response: httpx.Response) -> set[str]:
    body = response.json()
    return {f["field"] for f in body.get("fieldErrors") or []}


@pytest.mark.before_the_store
@pytest.mark.parametrize("path", POST_ROUTES)
@pytest.mark.parametrize(
    "raw",
    [b"", b"{", b"null", b"[]", b'"text"', b"42", b"{}", b"\xff\xfe", b'{"a": NaN}'],
)
def test_malformed_bodies_are_400(client: httpx.Client, path: str, raw: bytes) -> None:
    response = client.post(path, content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert error_code(response) == "INVALID_REQUEST_FORMAT"
    model = UnifiedError if path in UNIFIED_SHAPED else LegacyResult
    model.model_validate(response.json())
    assert fields_named(response)


@pytest.mark.before_the_store
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"operation": "validate"}, "credentials"),
        ({"operation": "teleport", "credentials": {}}, "operation"),
        ({"operation": "validate", "credentials": {"email": "a@b.co"}}, "credentials.token"),
        ({"operation": "validate", "credentials": {"email": 5, "token": "t"}}, "credentials.email"),
        (
            {"operation": "validate", "credentials": {"email": "not-an-email", "token": "t"}},
            "credentials.email",
        ),
        (
            {"operation": "validate", "credentials": {"email": "a@b.co", "token": "x" * 65}},
            "credentials.token",
        ),
        (
            {
                "operation": "validate",
                "credentials": {"email": "a@b.co", "token": "t"},
                "device": {"skipMachineUpdate": "yes"},
            },
            "device.skipMachineUpdate",
        ),
        (
            {"operation": "instant", "credentials": {"email": "a@b.co"}},
            "credentials.stripeSessionId",
        ),
        ({"operation": "session", "credentials": {"email": "a@b.co", "token": "t"}}, "action"),
        (
            {
                "operation": "session",
                "action": "start",
                "credentials": {"email": "a@b.co", "token": "t", "sessionId": "s"},
            },
            "device.machineFingerprint",
        ),
        (
            {
                "operation": "session",
                "action": "dance",
                "credentials": {"email": "a@b.co", "token": "t", "sessionId": "s"},
            },
            "action",
        ),
        (
            {
                "operation": "session",
                "action": "heartbeat",
                "credentials": {"email": "a@b.co", "token": "t", "sessionId": "has space"},
            },
            "credentials.sessionId",
        ),
    ],
)
def test_unified_names_the_bad_field(client: httpx.Client, body: Any, field: str) -> None:
    response = client.post(paths.VALIDATE_UNIFIED, json=body)
    assert response.status_code == 400, response.text
    assert field in fields_named(response)
    assert any(line.startswith(field) for line in response.json()["error"]["message"])


@pytest.mark.before_the_store
@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (paths.VALIDATE_LEGACY, {"email": "a@b.co"}, "token"),
        (
            paths.INSTANT_VALIDATE_LEGACY,
            {"email": "a@b.co", "stripeSessionId": "cs"},
            "machineFingerprint",
        ),
        (
            paths.SESSION_START,
            {"email": "a@b.co", "token": "t", "sessionId": "s"},
            "machineFingerprint",
        ),
        (
            paths.SESSION_TAKEOVER,
            {"email": "a@b.co", "token": "t", "machineFingerprint": "f"},
            "sessionId",
        ),
        (paths.SESSION_HEARTBEAT, {"sessionId": 7}, "sessionId"),
        (paths.SESSION_END, {"sessionId": ""}, "sessionId"),
        (paths.HARNESS_CLOCK, {"advance_seconds": "soon"}, "advance_seconds"),
        (paths.HARNESS_CLOCK, {"set": "yesterday"}, "set"),
        (paths.HARNESS_CLOCK, {}, "body"),
        (paths.HARNESS_CLOCK, {"advance_seconds": 1e12}, "advance_seconds"),
        (paths.HARNESS_FAULTS, {"db": {"errors": "true"}}, "db.errors"),
    ],
)
def test_other_routes_name_the_bad_field(
    client: httpx.Client, path: str, body: Any, field: str
) -> None:
    response = client.post(path, json=body)
    assert response.status_code == 400, response.text
    assert field in fields_named(response)


@pytest.mark.before_the_store
@pytest.mark.parametrize("path", POST_ROUTES)
def test_huge_bodies_are_413(client: httpx.Client, path: str) -> None:
    huge = b'{"pad": "' + b"x" * (256 * 1024) + b'"}'
    declared = client.post(path, content=huge)
    assert declared.status_code == 413
    assert error_code(declared) == "PAYLOAD_TOO_LARGE"

    def chunks() -> Any:
        for _ in range(64):
            yield b"x" * 4096

    streamed = client.post(path, content=chunks())  # chunked: no Content-Length to trust
    assert streamed.status_code == 413, streamed.text


@pytest.mark.parametrize(
    "email", ["tíll@exämple.test", "🧾@receipts.example", "a@b.c\u0000", "Ω@Ω.Ω"]
)
def test_unicode_is_answered_not_crashed(client: httpx.Client, email: str) -> None:
    body = {"operation": "validate", "credentials": {"email": email, "token": "POSPAL-ÄÖÜ-🧾"}}
    response = client.post(paths.VALIDATE_UNIFIED, json=body)
    assert response.status_code in (400, 401), response.text


@pytest.mark.before_the_store
def test_lone_surrogates_are_refused_cleanly(client: httpx.Client) -> None:
    raw = b'{"operation": "validate", "credentials": {"email": "a@b.co", "token": "\\ud800"}}'
    response = client.post(paths.VALIDATE_UNIFIED, content=raw)
    assert response.status_code in (400, 401), response.text


@pytest.mark.before_the_store
def test_unknown_route_and_wrong_method(client: httpx.Client) -> None:
    missing = client.get("/nope")
    assert missing.status_code == 404 and error_code(missing) == "NOT_FOUND"
    wrong = client.get(paths.VALIDATE_UNIFIED)
    assert wrong.status_code == 405 and error_code(wrong) == "METHOD_NOT_ALLOWED"


def test_bad_input_loses_nothing(client: httpx.Client, customer: Customer) -> None:
    """A malformed request between two good ones changes nothing for the good ones."""
    good = {
        "operation": "validate",
        "credentials": {"email": customer.email, "token": customer.token},
    }
    assert client.post(paths.VALIDATE_UNIFIED, json=good).status_code == 200
    assert client.post(paths.VALIDATE_UNIFIED, content=b'{"operation":').status_code == 400
    again = client.post(paths.VALIDATE_UNIFIED, json=good)
    assert again.status_code == 200
    assert again.json()["caching"]["strategy"] == "aggressive"


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
near_valid = st.fixed_dictionaries(
    {
        "operation": st.sampled_from(["validate", "instant", "session", "x"]) | json_values,
        "action": st.sampled_from(["start", "heartbeat", "end", "takeover"]) | json_values,
        "credentials": st.fixed_dictionaries(
            {},
            optional={
                "email": st.emails() | json_values,
                "token": st.text() | json_values,
                "sessionId": st.text() | json_values,
                "stripeSessionId": st.text() | json_values,
            },
        )
        | json_values,
        "device": st.fixed_dictionaries(
            {},
            optional={
                "machineFingerprint": st.text(),
                "deviceInfo": json_values,
                "skipMachineUpdate": json_values,
            },
        )
        | json_values,
    }
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(path=st.sampled_from(FUZZED), body=near_valid | json_values)
def test_fuzzed_bodies_never_5xx(client: httpx.Client, path: str, body: Any) -> None:
    response = client.post(path, json=body)
    assert response.status_code < 500, (path, body, response.text)
