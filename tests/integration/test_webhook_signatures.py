"""POST /webhook over real HTTP: an unverified delivery changes nothing, a
verified one is applied, and a verified but unusable one is a 400 naming the
field, never a 5xx."""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from fixtures.stripe import objects
from fixtures.stripe.ids import IdFactory
from licensing_service.contract import routes
from licensing_service.contract import stripe as contract
from tests.conftest import TEST_WEBHOOK_SECRET
from tests.live import LiveServer
from tests.shapes import error_code

TABLES = (
    "webhook_events",
    "customers",
    "billing_state",
    "email_log",
    "audit_log",
    "refund_requests",
)
_ids = IdFactory(random.Random(20260101))
_n = itertools.count(1)

Event = dict[str, Any]


@pytest.fixture
def http(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


# ---------------------------------------------------------------- helpers


def now_of(server: LiveServer) -> int:
    return int(server.clock.now().timestamp())


def new_email() -> str:
    return f"sig-{next(_n)}@example.test"


def checkout_event(server: LiveServer, email: str, **session: Any) -> Event:
    """A completed subscription checkout for ``email``: applied, it creates a license."""
    now = now_of(server)
    obj = objects.checkout_session(
        id=_ids.new("cs"),
        customer=_ids.new("cus"),
        subscription=_ids.new("sub"),
        email=email,
        name="Signature Till",
        created=now - 60,
    )
    obj.update(session)
    return objects.event(
        id=_ids.new("evt"), type=contract.CHECKOUT_COMPLETED, created=now, data_object=obj
    )


def subscription_event(server: LiveServer, status: str) -> Event:
    now = now_of(server)
    sub = _ids.new("sub")
    price = objects.price(id=_ids.new("price"), product=_ids.new("prod"), created=now)
    obj = objects.subscription(
        id=sub,
        customer=_ids.new("cus"),
        status=status,
        created=now,
        period_start=now,
        period_end=now + 30 * 86_400,
        item_id=_ids.new("si"),
        price_obj=price,
    )
    return objects.event(
        id=_ids.new("evt"), type=contract.SUBSCRIPTION_UPDATED, created=now, data_object=obj
    )


def encode(event: Event) -> bytes:
    return json.dumps(event).encode()


def post(http: httpx.Client, body: bytes, header: str | None) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if header is not None:
        headers[contract.SIGNATURE_HEADER] = header
    return http.post(routes.WEBHOOK, content=body, headers=headers)


def signed_post(
    http: httpx.Client, server: LiveServer, body: bytes, secret: str = TEST_WEBHOOK_SECRET
) -> httpx.Response:
    return post(http, body, contract.signature_header(body, secret, now_of(server)))


def counts(server: LiveServer) -> dict[str, int]:
    def read() -> dict[str, int]:
        conn = server.sqlite().connection()
        return {t: int(conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]) for t in TABLES}

    return server.run(read)


def customer_row(server: LiveServer, email: str) -> tuple[Any, ...] | None:
    def read() -> tuple[Any, ...] | None:
        row = (
            server.sqlite()
            .connection()
            .execute(
                "SELECT subscription_status, stripe_customer_id, stripe_session_id,"
                " subscription_id FROM customers WHERE email = ?",
                (email,),
            )
            .fetchone()
        )
        return None if row is None else tuple(row)

    return server.run(read)


def event_row(server: LiveServer, event_id: str) -> tuple[Any, ...] | None:
    def read() -> tuple[Any, ...] | None:
        row = (
            server.sqlite()
            .connection()
            .execute(
                "SELECT processing_status, outcome, error_message, event_type"
                " FROM webhook_events WHERE stripe_event_id = ?",
                (event_id,),
            )
            .fetchone()
        )
        return None if row is None else tuple(row)

    return server.run(read)


def assert_applied(response: httpx.Response, server: LiveServer, event: Event) -> None:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["received"] is True
    assert body["outcome"] == "applied"
    assert body["eventId"] == event["id"]
    assert body["type"] == event["type"]
    assert body["idempotent"] is False
    session = event["data"]["object"]
    row = customer_row(server, session["customer_details"]["email"])
    assert row == ("active", session["customer"], session["id"], session["subscription"])
    assert event_row(server, event["id"]) == ("completed", "applied", None, event["type"])


def assert_refused(
    response: httpx.Response,
    server: LiveServer,
    before: dict[str, int],
    emails: list[str],
    reason: str,
) -> None:
    assert response.status_code == 400, response.text
    assert error_code(response) == "WEBHOOK_SIGNATURE_INVALID"
    assert reason in response.json()["error"]["message"]
    assert counts(server) == before
    for email in emails:
        assert customer_row(server, email) is None


# ------------------------------------------------------------------ valid


def test_a_signed_checkout_is_applied_and_creates_the_license(
    server: LiveServer, http: httpx.Client
) -> None:
    email = new_email()
    event = checkout_event(server, email)
    before = counts(server)
    response = signed_post(http, server, encode(event))
    assert_applied(response, server, event)
    after = counts(server)
    assert after["customers"] == before["customers"] + 1
    assert after["webhook_events"] == before["webhook_events"] + 1
    assert after["billing_state"] == before["billing_state"] + 1
    assert after["email_log"] == before["email_log"] + 1  # the welcome email


@pytest.mark.parametrize("offset", [-300, 300], ids=["300s-old", "300s-ahead"])
def test_the_edges_of_the_tolerance_are_accepted(
    server: LiveServer, http: httpx.Client, offset: int
) -> None:
    event = checkout_event(server, new_email())
    body = encode(event)
    header = contract.signature_header(body, TEST_WEBHOOK_SECRET, now_of(server) + offset)
    assert_applied(post(http, body, header), server, event)


def test_stripe_signing_with_old_and_new_secret_verifies_against_ours(
    server: LiveServer, http: httpx.Client
) -> None:
    # Stripe rolling its secret: one v1 per secret, ours is one of them.
    event = checkout_event(server, new_email())
    body = encode(event)
    header = contract.signature_header(body, ["whsec_retired", TEST_WEBHOOK_SECRET], now_of(server))
    assert_applied(post(http, body, header), server, event)


# ---------------------------------------------------------------- refused


def _sig(body: bytes, t: int, secret: str = TEST_WEBHOOK_SECRET) -> str:
    return contract.compute_signature(body, secret, t)


def _alter(body: bytes, email: str) -> bytes:
    # One byte of the email: still valid JSON, a different license if applied.
    altered = body.replace(email.encode(), ("X" + email[1:]).encode())
    assert altered != body
    assert len(altered) == len(body)
    return altered


Forge = Callable[[bytes, int, str], tuple[bytes, str | None]]
REFUSED: dict[str, tuple[Forge, str]] = {
    "wrong-secret": (
        lambda b, t, _: (b, contract.signature_header(b, "whsec_wrong", t)),
        "match",
    ),
    "301s-old": (
        lambda b, t, _: (b, contract.signature_header(b, TEST_WEBHOOK_SECRET, t - 301)),
        "old",
    ),
    "301s-ahead": (
        lambda b, t, _: (b, contract.signature_header(b, TEST_WEBHOOK_SECRET, t + 301)),
        "future",
    ),
    "missing": (lambda b, t, _: (b, None), "missing"),
    "empty": (lambda b, t, _: (b, ""), "missing"),
    "no-t": (lambda b, t, _: (b, f"v1={_sig(b, t)}"), "no timestamp"),
    "non-numeric-t": (lambda b, t, _: (b, f"t=abc,v1={_sig(b, t)}"), "unix time"),
    "no-v1": (lambda b, t, _: (b, f"t={t}"), "no v1"),
    "garbage": (lambda b, t, _: (b, "garbage"), "malformed"),
    "only-v0": (lambda b, t, _: (b, f"t={t},v0={_sig(b, t)}"), "no v1"),
    "other-timestamp": (lambda b, t, _: (b, f"t={t},v1={_sig(b, t - 1)}"), "match"),
    "body-altered": (
        lambda b, t, email: (
            _alter(b, email),
            contract.signature_header(b, TEST_WEBHOOK_SECRET, t),
        ),
        "match",
    ),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_an_unverified_delivery_is_refused_and_changes_nothing(
    server: LiveServer, http: httpx.Client, case: str
) -> None:
    forge, reason = REFUSED[case]
    email = new_email()
    body = encode(checkout_event(server, email))
    sent, header = forge(body, now_of(server), email)
    before = counts(server)
    response = post(http, sent, header)
    assert_refused(response, server, before, [email, "x" + email[1:]], reason)


def test_a_delivery_that_waited_more_than_300s_is_stale(
    server: LiveServer, http: httpx.Client
) -> None:
    email = new_email()
    event = checkout_event(server, email)
    body = encode(event)
    header = contract.signature_header(body, TEST_WEBHOOK_SECRET, now_of(server))
    server.run(lambda: server.clock.advance(301))
    before = counts(server)
    assert_refused(post(http, body, header), server, before, [email], "old")
    # The same delivery, re-signed now as Stripe's retry would be, goes through.
    assert_applied(signed_post(http, server, body), server, event)


def test_a_delivery_that_waited_exactly_300s_is_accepted(
    server: LiveServer, http: httpx.Client
) -> None:
    event = checkout_event(server, new_email())
    body = encode(event)
    header = contract.signature_header(body, TEST_WEBHOOK_SECRET, now_of(server))
    server.run(lambda: server.clock.advance(300))
    assert_applied(post(http, body, header), server, event)


# ---------------------------------------------------------------- rotation


def test_two_configured_secrets_accept_a_header_signed_by_either(
    make_server: Callable[..., LiveServer],
) -> None:
    rotating = make_server(stripe_webhook_secret="whsec_old,whsec_new")
    with httpx.Client(base_url=rotating.url, timeout=10) as http:
        for signers in (["whsec_old"], ["whsec_new"], ["whsec_old", "whsec_new"]):
            event = checkout_event(rotating, new_email())
            body = encode(event)
            header = contract.signature_header(body, signers, now_of(rotating))
            assert_applied(post(http, body, header), rotating, event)

        for signers in (["whsec_other"], [TEST_WEBHOOK_SECRET], ["whsec_old_", "whsec_ne"]):
            email = new_email()
            body = encode(checkout_event(rotating, email))
            before = counts(rotating)
            header = contract.signature_header(body, signers, now_of(rotating))
            assert_refused(post(http, body, header), rotating, before, [email], "match")


# -------------------------------------------------------------- no secret


@pytest.mark.parametrize("secret", [None, "", " , "], ids=["none", "empty", "only-commas"])
def test_without_a_secret_the_webhook_is_not_configured(
    make_server: Callable[..., LiveServer], secret: str | None
) -> None:
    bare = make_server(stripe_webhook_secret=secret)
    email = new_email()
    body = encode(checkout_event(bare, email))
    before = counts(bare)
    with httpx.Client(base_url=bare.url, timeout=10) as http:
        for header in (contract.signature_header(body, TEST_WEBHOOK_SECRET, now_of(bare)), None):
            response = post(http, body, header)
            assert response.status_code == 503, response.text
            assert error_code(response) == "WEBHOOK_NOT_CONFIGURED"
    assert counts(bare) == before
    assert customer_row(bare, email) is None


# ----------------------------------------------------- signed, but unusable


def _without(event: Event, key: str) -> bytes:
    return encode({k: v for k, v in event.items() if k != key})


def _field_errors(response: httpx.Response) -> list[str]:
    return [f["field"] for f in response.json()["fieldErrors"]]


UNREADABLE: dict[str, tuple[Callable[[Event], bytes], str]] = {
    "not-json": (lambda e: b"this is not json", "body"),
    "truncated-json": (lambda e: encode(e)[:-1], "body"),
    "not-utf8": (lambda e: b"\xff\xfe{}", "body"),
    "array": (lambda e: b"[]", "body"),
    "null": (lambda e: b"null", "body"),
    "empty-object": (lambda e: b"{}", "id"),
    "no-id": (lambda e: _without(e, "id"), "id"),
    "id-not-an-event": (lambda e: encode({**e, "id": "ch_123"}), "id"),
    "id-a-number": (lambda e: encode({**e, "id": 42}), "id"),
    "no-type": (lambda e: _without(e, "type"), "type"),
    "no-created": (lambda e: _without(e, "created"), "created"),
    "created-not-a-time": (lambda e: encode({**e, "created": "yesterday"}), "created"),
    "no-data": (lambda e: _without(e, "data"), "data.object"),
    "data-object-a-list": (lambda e: encode({**e, "data": {"object": []}}), "data.object"),
}


@pytest.mark.parametrize("case", list(UNREADABLE))
def test_a_signed_but_unreadable_event_is_a_400_naming_the_field(
    server: LiveServer, http: httpx.Client, case: str
) -> None:
    make_body, field = UNREADABLE[case]
    email = new_email()
    body = make_body(checkout_event(server, email))
    before = counts(server)
    response = signed_post(http, server, body)
    assert response.status_code == 400, response.text
    assert error_code(response) == "WEBHOOK_PAYLOAD_INVALID"
    assert _field_errors(response) == [field]
    # Without a readable id there is nothing to record against.
    assert counts(server) == before
    assert customer_row(server, email) is None


def test_a_subscription_checkout_without_an_email_is_a_recorded_failure(
    server: LiveServer, http: httpx.Client
) -> None:
    email = new_email()
    event = checkout_event(server, email, customer_email=None)
    event["data"]["object"]["customer_details"]["email"] = None
    assert event["data"]["object"]["mode"] == "subscription"
    before = counts(server)
    response = signed_post(http, server, encode(event))
    assert response.status_code == 400, response.text
    assert error_code(response) == "WEBHOOK_PAYLOAD_INVALID"
    assert _field_errors(response) == ["data.object.customer_details.email"]
    row = event_row(server, event["id"])
    assert row is not None
    status, outcome, error, kind = row
    assert (status, outcome, kind) == ("failed", None, contract.CHECKOUT_COMPLETED)
    assert "data.object.customer_details.email" in error
    # The failure is recorded; nothing else happened.
    after = counts(server)
    assert after == {**before, "webhook_events": before["webhook_events"] + 1}
    assert customer_row(server, email) is None

    # Redelivered unchanged, it fails the same way (and stays one row).
    again = signed_post(http, server, encode(event))
    assert again.status_code == 400, again.text
    assert _field_errors(again) == ["data.object.customer_details.email"]
    assert counts(server) == after
    assert event_row(server, event["id"]) == row


def test_an_unknown_subscription_status_is_a_recorded_failure(
    server: LiveServer, http: httpx.Client
) -> None:
    event = subscription_event(server, "exploded")
    before = counts(server)
    response = signed_post(http, server, encode(event))
    assert response.status_code == 400, response.text
    assert error_code(response) == "WEBHOOK_PAYLOAD_INVALID"
    assert _field_errors(response) == ["data.object.status"]
    row = event_row(server, event["id"])
    assert row is not None
    assert row[0] == "failed"
    assert "data.object.status" in row[2]
    assert counts(server) == {**before, "webhook_events": before["webhook_events"] + 1}


def test_a_known_subscription_status_is_applied(server: LiveServer, http: httpx.Client) -> None:
    # The control for the test above: same shape, a status Stripe really sends.
    event = subscription_event(server, "past_due")
    response = signed_post(http, server, encode(event))
    assert response.status_code == 200, response.text
    assert response.json()["outcome"] == "applied"
    assert event_row(server, event["id"]) == (
        "completed",
        "applied",
        None,
        contract.SUBSCRIPTION_UPDATED,
    )


@pytest.mark.parametrize(
    "header",
    ["t=\xb2,v1=ab", "t={now},v1=\xe9", "t={now},v1=" + "\xe9" * 64],
    ids=["latin1-digit-timestamp", "non-ascii-signature", "non-ascii-64"],
)
def test_non_ascii_headers_are_refused_not_crashed(
    server: LiveServer, client: httpx.Client, header: str
) -> None:
    """Found in review: these raised ValueError/TypeError inside verification (a 500)."""
    now = int(server.clock.now().timestamp())
    body = b'{"id": "evt_x", "type": "invoice.paid"}'
    raw = header.replace("{now}", str(now)).encode("latin-1")
    response = client.post("/webhook", content=body, headers=[(b"stripe-signature", raw)])
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "WEBHOOK_SIGNATURE_INVALID"


@pytest.mark.parametrize("blank", ["   ", "not-an-address"])
def test_a_checkout_without_a_usable_email_creates_no_license(
    server: LiveServer, http: httpx.Client, blank: str
) -> None:
    """Found in review: a whitespace email created a license with email ''."""
    before = counts(server)
    response = signed_post(http, server, encode(checkout_event(server, blank)))
    assert response.status_code == 400
    assert {f["field"] for f in response.json()["fieldErrors"]} == {
        "data.object.customer_details.email"
    }
    after = counts(server)
    assert after["customers"] == before["customers"]
    assert after["email_log"] == before["email_log"]
