"""Signed invoice events for a license the checks created: the billing facts two checks send."""

from __future__ import annotations

import random
import uuid
from typing import Any

from fixtures.stripe import objects
from fixtures.stripe.ids import IdFactory
from fixtures.stripe.lifecycle import MONTH
from licensing_service.contract import stripe as contract
from loadtests.harness.checks.target import Answer, CheckFailed
from loadtests.harness.provision import Credential


def invoice_event(
    cred: Credential, *, paid: bool, invoice_id: str, created: int, ids: IdFactory
) -> dict[str, Any]:
    """``invoice.payment_failed`` (first attempt) or ``invoice.paid`` (second
    attempt) of the subscription the checkout created, for the month from ``created``."""
    invoice = objects.invoice(
        id=invoice_id,
        customer=cred.stripe_customer_id,
        customer_email=cred.email,
        customer_name=None,
        subscription=cred.subscription_id,
        subscription_item=ids.new("si"),
        line_id=ids.new("il"),
        status="paid" if paid else "open",
        created=created,
        period_start=created,
        period_end=created + MONTH,
        attempt_count=2 if paid else 1,
        paid_at=created if paid else None,
    )
    kind = contract.INVOICE_PAID if paid else contract.INVOICE_PAYMENT_FAILED
    return objects.event(id=ids.new("evt"), type=kind, created=created, data_object=invoice)


def new_ids() -> IdFactory:
    return IdFactory(random.Random(uuid.uuid4().int))


def expect_delivered(answer: Answer, what: str) -> None:
    if not answer.is_(200) or answer.body.get("idempotent") is not False:
        raise CheckFailed(
            f"the signed {what} answered {answer.describe()}"
            f" (idempotent={answer.body.get('idempotent')!r}), expected 200 with"
            " idempotent false (a first delivery)"
        )
