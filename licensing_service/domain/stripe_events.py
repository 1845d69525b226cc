"""Reading a Stripe event (already verified and JSON-decoded) into what the
licensing service acts on. Pure: a dict in, a :class:`StripeChange` out, or
:class:`PayloadInvalid` naming the field that is missing or wrong.

Which emails an event causes is decided here, from the event alone, so the
set of emails does not depend on delivery order either:

* ``checkout.session.completed`` → welcome (once per checkout session);
* ``invoice.payment_failed`` → suspension (once per invoice, however many
  attempts fail);
* ``invoice.paid`` / ``invoice.payment_succeeded`` of an invoice that had
  failed before (``attempt_count > 1``) → reactivation (once per invoice;
  both event types name the same invoice). Under the no-grace policy a
  failed attempt suspended the license, so this is exactly "it was inactive".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from licensing_service.contract import stripe as contract
from licensing_service.domain.billing import STRIPE_STATUS, BillingFact
from licensing_service.domain.subscription import SubscriptionStatus

# Far beyond any real period end, and within what datetime can hold.
_MAX_UNIX = 7_258_118_400  # 2200-01-01


class PayloadInvalid(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class EmailKind(StrEnum):
    WELCOME = "welcome"
    SUSPENSION = "suspension"
    REACTIVATION = "reactivation"


@dataclass(frozen=True, slots=True)
class EmailCause:
    kind: EmailKind
    dedupe_key: str


@dataclass(frozen=True, slots=True)
class EventHeader:
    id: str
    type: str
    created: int
    data_object: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Refund:
    key: str  # unique per refund: the refund id, else charge id and refunded total
    charge_id: str
    amount_cents: int
    currency: str


@dataclass(frozen=True, slots=True)
class StripeChange:
    header: EventHeader
    stripe_customer_id: str
    fact: BillingFact
    email: str | None = None
    name: str | None = None
    checkout_session_id: str | None = None  # set for a completed subscription checkout
    refund: Refund | None = None
    emails: tuple[EmailCause, ...] = ()


def read_header(event: Any) -> EventHeader:
    if not isinstance(event, Mapping):
        raise PayloadInvalid("body", "expected a JSON object (a Stripe event)")
    event_id = _text(event, "id", "id")
    if not event_id.startswith("evt_"):
        raise PayloadInvalid("id", "expected a Stripe event id (evt_...)")
    data = event.get("data")
    if not isinstance(data, Mapping) or not isinstance(data.get("object"), Mapping):
        raise PayloadInvalid("data.object", "expected an object")
    return EventHeader(
        event_id, _text(event, "type", "type"), _unix(event, "created", "created"), data["object"]
    )


def read_change(header: EventHeader) -> StripeChange | None:
    """The change a handled event asks for; None for an event that concerns
    no license (a checkout in payment mode, a one-off invoice's refund...)."""
    kind = header.type
    if kind == contract.CHECKOUT_COMPLETED:
        return _checkout(header)
    if kind in contract.SUBSCRIPTION_EVENTS:
        return _subscription(header)
    if kind in (contract.INVOICE_PAID, contract.INVOICE_PAYMENT_SUCCEEDED):
        return _invoice(header, paid=True)
    if kind == contract.INVOICE_PAYMENT_FAILED:
        return _invoice(header, paid=False)
    if kind == contract.CHARGE_REFUNDED:
        return _refund(header)
    if kind == contract.CUSTOMER_DELETED:
        return _customer_deleted(header)
    raise ValueError(f"not a handled event type: {kind}")


def _checkout(h: EventHeader) -> StripeChange | None:
    obj = h.data_object
    if obj.get("mode") != "subscription":
        return None  # a one-off payment: not a license
    session_id = _text(obj, "id", "data.object.id")
    details = obj.get("customer_details")
    details = details if isinstance(details, Mapping) else {}
    email = _opt_email(details, "email") or _opt_email(obj, "customer_email")
    if email is None:
        raise PayloadInvalid("data.object.customer_details.email", "a checkout needs an email")
    subscription = _text(obj, "subscription", "data.object.subscription")
    fact = BillingFact(h.id, h.created, SubscriptionStatus.ACTIVE, None, subscription)
    return StripeChange(
        h,
        _text(obj, "customer", "data.object.customer"),
        fact,
        email=email,
        name=_opt_text(details, "name"),
        checkout_session_id=session_id,
        emails=(EmailCause(EmailKind.WELCOME, f"welcome:{session_id}"),),
    )


def _subscription(h: EventHeader) -> StripeChange:
    obj = h.data_object
    raw_status = _text(obj, "status", "data.object.status")
    status = STRIPE_STATUS.get(raw_status)
    if status is None:
        raise PayloadInvalid("data.object.status", f"unknown subscription status {raw_status!r}")
    items = _list_data(obj, "items", "data.object.items")
    ends = [
        _unix(item, "current_period_end", "data.object.items.data[].current_period_end")
        for item in items
        if item.get("current_period_end") is not None
    ]
    fact = BillingFact(
        h.id,
        h.created,
        status,
        _as_time(max(ends)) if ends else None,
        _text(obj, "id", "data.object.id"),
    )
    return StripeChange(h, _text(obj, "customer", "data.object.customer"), fact)


def _invoice(h: EventHeader, *, paid: bool) -> StripeChange:
    obj = h.data_object
    invoice_id = _text(obj, "id", "data.object.id")
    subscription = _invoice_subscription(obj)
    lines = _list_data(obj, "lines", "data.object.lines")
    ends = []
    for line in lines:
        period = line.get("period")
        if isinstance(period, Mapping) and period.get("end") is not None:
            ends.append(_unix(period, "end", "data.object.lines.data[].period.end"))
    attempts = obj.get("attempt_count", 0)
    if not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 0:
        raise PayloadInvalid("data.object.attempt_count", "expected a non-negative integer")
    # A one-off invoice (no subscription) says nothing about the license.
    status = None
    if subscription is not None:
        status = SubscriptionStatus.ACTIVE if paid else SubscriptionStatus.INACTIVE
    fact = BillingFact(
        h.id,
        h.created,
        status,
        _as_time(max(ends)) if ends and paid and subscription is not None else None,
        subscription,
        payment_failed=not paid and subscription is not None,
    )
    emails: tuple[EmailCause, ...] = ()
    if subscription is not None and not paid:
        emails = (EmailCause(EmailKind.SUSPENSION, f"suspension:{invoice_id}"),)
    elif subscription is not None and attempts > 1:
        emails = (EmailCause(EmailKind.REACTIVATION, f"reactivation:{invoice_id}"),)
    return StripeChange(
        h,
        _text(obj, "customer", "data.object.customer"),
        fact,
        email=_opt_email(obj, "customer_email"),
        name=_opt_text(obj, "customer_name"),
        emails=emails,
    )


def _invoice_subscription(obj: Mapping[str, Any]) -> str | None:
    parent = obj.get("parent")
    if isinstance(parent, Mapping):
        details = parent.get("subscription_details")
        if isinstance(details, Mapping) and isinstance(details.get("subscription"), str):
            return str(details["subscription"])
    legacy = obj.get("subscription")  # API versions before 2025-03-31
    return legacy if isinstance(legacy, str) else None


def _refund(h: EventHeader) -> StripeChange:
    obj = h.data_object
    charge_id = _text(obj, "id", "data.object.id")
    amount = obj.get("amount_refunded")
    if not isinstance(amount, int) or isinstance(amount, bool) or amount < 0:
        raise PayloadInvalid("data.object.amount_refunded", "expected a non-negative integer")
    refunds = obj.get("refunds")
    listed = refunds.get("data") if isinstance(refunds, Mapping) else None
    newest = listed[0] if isinstance(listed, list) and listed else None
    key = (
        str(newest["id"])
        if isinstance(newest, Mapping) and isinstance(newest.get("id"), str)
        else f"{charge_id}:{amount}"
    )
    currency = _opt_text(obj, "currency") or "eur"
    return StripeChange(
        h,
        _text(obj, "customer", "data.object.customer"),
        BillingFact(h.id, h.created),
        email=_opt_email(obj, "receipt_email"),
        refund=Refund(key, charge_id, amount, currency),
    )


def _customer_deleted(h: EventHeader) -> StripeChange:
    obj = h.data_object
    fact = BillingFact(h.id, h.created, SubscriptionStatus.CANCELLED)
    return StripeChange(h, _text(obj, "id", "data.object.id"), fact, email=_opt_email(obj, "email"))


# ----------------------------------------------------------------- readers


def _text(obj: Mapping[str, Any], key: str, field: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value or len(value) > 500:
        raise PayloadInvalid(field, "expected a non-empty string")
    return value


def _opt_text(obj: Mapping[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if not isinstance(value, str) or len(value) > 500:
        return None
    return value.strip() or None


def _opt_email(obj: Mapping[str, Any], key: str) -> str | None:
    value = _opt_text(obj, key)
    return value if value is not None and "@" in value else None


def _unix(obj: Mapping[str, Any], key: str, field: str) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _MAX_UNIX:
        raise PayloadInvalid(field, "expected a unix timestamp in seconds")
    return value


def _list_data(obj: Mapping[str, Any], key: str, field: str) -> list[Mapping[str, Any]]:
    value = obj.get(key)
    if value is None:
        return []
    data = value.get("data") if isinstance(value, Mapping) else None
    if not isinstance(data, list) or not all(isinstance(x, Mapping) for x in data):
        raise PayloadInvalid(f"{field}.data", "expected a list of objects")
    return data


def _as_time(unix: int) -> datetime:
    return datetime.fromtimestamp(unix, UTC)
