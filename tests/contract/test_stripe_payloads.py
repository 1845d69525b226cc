"""Generated Stripe payloads are what Stripe's own library accepts, signed the
way it verifies, in the shape of the pinned API version."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import stripe
from freezegun import freeze_time

from fixtures.stripe import objects
from fixtures.stripe.lifecycle import simulate
from licensing_service.contract import stripe as contract

ROOT = Path(__file__).resolve().parents[2]
STRIPE_FIXTURES = ROOT.parent / "shared/stripe/fixtures3.json"
SECRET = "whsec_contract_test"
T = 1_767_225_600  # 2026-01-01T00:00:00Z
DAY = 86_400

# The class stripe-python builds for each object type a webhook carries.
OBJECT_CLASSES: dict[str, type[stripe.StripeObject]] = {
    "subscription": stripe.Subscription,
    "invoice": stripe.Invoice,
    "checkout.session": stripe.checkout.Session,
    "charge": stripe.Charge,
    "customer": stripe.Customer,
}


def factory_objects() -> dict[str, dict[str, Any]]:
    """One of each object our factories make, keyed by Stripe's resource name."""
    price = objects.price(id="price_contract", product="prod_contract", created=T - 90 * DAY)
    subscription = objects.subscription(
        id="sub_contract",
        customer="cus_contract",
        status="active",
        created=T,
        period_start=T,
        period_end=T + 30 * DAY,
        item_id="si_contract",
        price_obj=price,
        latest_invoice="in_contract",
    )
    invoice = objects.invoice(
        id="in_contract",
        customer="cus_contract",
        customer_email="till@example.test",
        customer_name="Contract Till",
        subscription="sub_contract",
        subscription_item="si_contract",
        line_id="il_contract",
        status="paid",
        created=T,
        period_start=T,
        period_end=T + 30 * DAY,
        attempt_count=1,
        paid_at=T,
    )
    return {
        "customer": objects.customer(
            id="cus_contract", email="till@example.test", name="Contract Till", created=T
        ),
        "price": price,
        "subscription": subscription,
        "subscription_item": subscription["items"]["data"][0],
        "invoice": invoice,
        "line_item": invoice["lines"]["data"][0],
        "checkout.session": objects.checkout_session(
            id="cs_contract",
            customer="cus_contract",
            subscription="sub_contract",
            email="till@example.test",
            name="Contract Till",
            created=T - 60,
        ),
        "charge": objects.charge(
            id="ch_contract",
            customer="cus_contract",
            email="till@example.test",
            created=T,
            amount_refunded=objects.PRICE_CENTS,
        ),
        "billing_portal.session": objects.billing_portal_session(
            id="bps_contract",
            customer="cus_contract",
            created=T,
            return_url="https://pospal.example/account",
        ),
        "event": objects.event(
            id="evt_contract",
            type=contract.INVOICE_PAID,
            created=T,
            data_object=invoice,
            request_id="req_contract",
        ),
    }


def factory_events() -> list[dict[str, Any]]:
    """One event of every type the service handles, made by the factories."""
    made = factory_objects()
    by_type = {
        contract.CHECKOUT_COMPLETED: made["checkout.session"],
        contract.INVOICE_PAID: made["invoice"],
        contract.INVOICE_PAYMENT_SUCCEEDED: made["invoice"],
        contract.INVOICE_PAYMENT_FAILED: {**made["invoice"], "status": "open", "amount_paid": 0},
        contract.CHARGE_REFUNDED: made["charge"],
        contract.CUSTOMER_DELETED: made["customer"],
        **dict.fromkeys(contract.SUBSCRIPTION_EVENTS, made["subscription"]),
    }
    assert set(by_type) == contract.HANDLED_EVENTS
    return [
        objects.event(id=f"evt_factory_{n}", type=kind, created=T + n, data_object=obj)
        for n, (kind, obj) in enumerate(sorted(by_type.items()))
    ]


def all_events() -> list[dict[str, Any]]:
    return simulate(30, 6, seed=3).events + factory_events()


def at(unix: int) -> datetime:
    return datetime.fromtimestamp(unix, UTC)


# ---------------------------------------------------------------- versions


def test_the_stripe_library_speaks_the_pinned_api_version() -> None:
    # stripe-python has no __version__; stripe.VERSION is the library's own
    # version, stripe.api_version the API version it sends and parses.
    assert stripe.api_version == contract.API_VERSION, (
        f"stripe {stripe.VERSION} speaks {stripe.api_version}, "
        f"the service pins {contract.API_VERSION}"
    )


def test_generated_events_carry_the_pinned_version() -> None:
    events = all_events()
    assert {e["api_version"] for e in events} == {contract.API_VERSION}


def test_the_simulation_covers_the_handled_types() -> None:
    # Guards the loop below against a stream that lost a whole kind of event.
    kinds = {e["type"] for e in simulate(30, 6, seed=3).events}
    assert {
        contract.CHECKOUT_COMPLETED,
        contract.SUBSCRIPTION_CREATED,
        contract.SUBSCRIPTION_UPDATED,
        contract.INVOICE_PAID,
        contract.INVOICE_PAYMENT_SUCCEEDED,
        contract.INVOICE_PAYMENT_FAILED,
    } <= kinds
    factory_kinds = {e["type"] for e in factory_events()}
    assert factory_kinds == contract.HANDLED_EVENTS


# ---------------------------------------------------------- construct_event


def test_stripe_verifies_and_parses_every_generated_event() -> None:
    events = all_events()
    assert len(events) > 100
    with freeze_time(at(events[0]["created"])) as frozen:
        for event in events:
            t = event["created"]
            # Stripe checks the tolerance against the wall clock: stand at t.
            frozen.move_to(at(t))
            body = json.dumps(event).encode()
            parsed = stripe.Webhook.construct_event(
                body, contract.signature_header(body, SECRET, t), SECRET
            )
            assert isinstance(parsed, stripe.Event)
            assert parsed.id == event["id"]
            assert parsed.type == event["type"]
            assert parsed.created == t
            assert parsed.data.object.object == event["data"]["object"]["object"]
            assert parsed.data.object.id == event["data"]["object"]["id"]
            # Nothing lost or renamed on the way through the library (for_json: its
            # Decimal fields, like unit_amount_decimal, back to strings).
            assert parsed.to_dict(for_json=True) == event


def test_stripe_accepts_our_rotation_header_with_either_secret() -> None:
    event = factory_events()[0]
    body = json.dumps(event).encode()
    header = contract.signature_header(body, ["whsec_old", "whsec_new"], T)
    with freeze_time(at(T)):
        for secret in ("whsec_old", "whsec_new"):
            assert stripe.Webhook.construct_event(body, header, secret).id == event["id"]
        with pytest.raises(stripe.SignatureVerificationError):
            stripe.Webhook.construct_event(body, header, "whsec_other")


@pytest.mark.parametrize(("age", "accepted"), [(0, True), (300, True), (301, False)])
def test_stripe_and_we_agree_on_the_age_limit(age: int, accepted: bool) -> None:
    # The freeze is real: a signature 301 s old is refused by Stripe too.
    event = factory_events()[0]
    body = json.dumps(event).encode()
    header = contract.signature_header(body, SECRET, T)
    ours: bool
    try:
        contract.verify_signature(body, header, [SECRET], T + age)
        ours = True
    except contract.SignatureError:
        ours = False
    with freeze_time(at(T + age)):
        try:
            stripe.Webhook.construct_event(body, header, SECRET)
            theirs = True
        except stripe.SignatureVerificationError:
            theirs = False
    assert (ours, theirs) == (accepted, accepted)


def test_stripe_refuses_what_we_refuse_for_a_changed_body() -> None:
    event = factory_events()[0]
    body = json.dumps(event).encode()
    header = contract.signature_header(body, SECRET, T)
    with freeze_time(at(T)), pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(body + b" ", header, SECRET)


# ------------------------------------------------------------ construct_from


def test_construct_from_builds_the_right_classes() -> None:
    seen: set[str] = set()
    for event in all_events():
        parsed = stripe.Event.construct_from(event, "sk_test_x")
        assert isinstance(parsed, stripe.Event)
        assert parsed.id == event["id"]
        obj = parsed.data.object
        kind = event["data"]["object"]["object"]
        assert obj.object == kind
        assert type(obj) is OBJECT_CLASSES[kind], (event["type"], kind, type(obj))
        seen.add(kind)
        if kind == "subscription":
            item = obj["items"].data[0]
            assert isinstance(item, stripe.SubscriptionItem)
            assert isinstance(item.price, stripe.Price)
        if kind == "invoice":
            assert isinstance(obj.lines.data[0], stripe.InvoiceLineItem)
    assert seen == set(OBJECT_CLASSES)


# ----------------------------------------------------------------- key sets

RESOURCES = [
    "customer",
    "subscription",
    "subscription_item",
    "invoice",
    "line_item",
    "checkout.session",
    "charge",
    "billing_portal.session",
    "price",
    "event",
]


@pytest.fixture(scope="module")
def stripe_resources() -> dict[str, dict[str, Any]]:
    if not STRIPE_FIXTURES.is_file():
        pytest.skip(
            f"Stripe's fixture set is not at {STRIPE_FIXTURES} "
            "(../shared/stripe/fixtures3.json from the project root): key sets not compared"
        )
    resources: dict[str, dict[str, Any]] = json.loads(STRIPE_FIXTURES.read_text())["resources"]
    return resources


@pytest.mark.parametrize("resource", RESOURCES)
def test_factory_objects_have_stripes_keys(
    resource: str, stripe_resources: dict[str, dict[str, Any]]
) -> None:
    ours = set(factory_objects()[resource])
    theirs = set(stripe_resources[resource])
    assert ours == theirs, (
        f"{resource}: only ours {sorted(ours - theirs)}, only Stripe's {sorted(theirs - ours)}"
    )
    assert stripe_resources[resource]["object"] == factory_objects()[resource]["object"]
