"""Small Stripe stories for tests: one customer's events, signed posts."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

import httpx

from fixtures.stripe import objects
from fixtures.stripe.ids import IdFactory
from licensing_service.contract import routes
from licensing_service.contract import stripe as contract
from tests.conftest import TEST_WEBHOOK_SECRET
from tests.live import LiveServer

DAY = 86_400
MONTH = 30 * DAY
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z, the live server's epoch


@dataclass
class Story:
    email: str
    cus: str
    sub: str
    checkout: str
    failed_invoice: str
    events: list[dict[str, Any]]


def five_event_story(seed: int, email: str) -> Story:
    """Sign-up, a failed renewal, and its recovery: the final license is
    active, paid to the end of the second month, with one failure counted."""
    ids = IdFactory(random.Random(seed))
    cus, sub, item, cs = ids.new("cus"), ids.new("sub"), ids.new("si"), ids.new("cs")
    price = objects.price(id=ids.new("price"), product=ids.new("prod"), created=T0 - DAY)
    renew, recover = T0 + MONTH, T0 + MONTH + 3 * DAY
    inv = ids.new("in")

    def subscription(status: str, start: int) -> dict[str, Any]:
        return objects.subscription(
            id=sub,
            customer=cus,
            status=status,
            created=T0,
            period_start=start,
            period_end=start + MONTH,
            item_id=item,
            price_obj=price,
        )

    def invoice(status: str, at: int, attempt: int) -> dict[str, Any]:
        return objects.invoice(
            id=inv,
            customer=cus,
            customer_email=email,
            customer_name="Story Till",
            subscription=sub,
            subscription_item=item,
            line_id=ids.new("il"),
            status=status,
            created=at,
            period_start=renew,
            period_end=renew + MONTH,
            attempt_count=attempt,
            paid_at=at if status == "paid" else None,
        )

    def event(kind: str, at: int, obj: dict[str, Any]) -> dict[str, Any]:
        return objects.event(id=ids.new("evt"), type=kind, created=at, data_object=obj)

    checkout = objects.checkout_session(
        id=cs, customer=cus, subscription=sub, email=email, name="Story Till", created=T0
    )
    events = [
        event(contract.SUBSCRIPTION_CREATED, T0, subscription("active", T0)),
        event(contract.CHECKOUT_COMPLETED, T0 + 1, checkout),
        event(contract.INVOICE_PAYMENT_FAILED, renew, invoice("open", renew, 1)),
        event(contract.SUBSCRIPTION_UPDATED, renew, subscription("past_due", renew)),
        event(contract.INVOICE_PAID, recover, invoice("paid", recover, 2)),
    ]
    return Story(email, cus, sub, cs, inv, events)


def post_event(
    client: httpx.Client,
    server: LiveServer,
    event: dict[str, Any],
    secret: str = TEST_WEBHOOK_SECRET,
) -> httpx.Response:
    body = json.dumps(event).encode()
    now = int(server.clock.now().timestamp())
    headers = {contract.SIGNATURE_HEADER: contract.signature_header(body, secret, now)}
    return client.post(routes.WEBHOOK, content=body, headers=headers)


def license_row(server: LiveServer, email: str) -> tuple[Any, ...] | None:
    def read() -> tuple[Any, ...] | None:
        row = (
            server.sqlite()
            .connection()
            .execute(
                "SELECT subscription_status, current_period_end, payment_failures,"
                " stripe_customer_id, subscription_id FROM customers WHERE email = ?",
                (email,),
            )
            .fetchone()
        )
        return None if row is None else tuple(row)

    return server.run(read)


def emails_for(server: LiveServer, recipient: str) -> list[tuple[str, str]]:
    def read() -> list[tuple[str, str]]:
        rows = (
            server.sqlite()
            .connection()
            .execute(
                "SELECT email_type, dedupe_key FROM email_log WHERE recipient = ? ORDER BY 1, 2",
                (recipient,),
            )
            .fetchall()
        )
        return [(r[0], r[1]) for r in rows]

    return server.run(read)
