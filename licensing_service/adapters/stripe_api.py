"""Outgoing calls to Stripe (Checkout, the customer portal) through the official library.

The library does the retrying: connection errors, timeouts, 409 and 5xx are
retried up to ``max_retries`` times with its own jittered exponential backoff
(0.5 s doubling, capped at 5 s), and every attempt of one call carries the same
``Idempotency-Key``, so a retried create cannot create twice. This adapter
only turns what is left into two exceptions the service can act on.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from typing import Any, Final

import stripe
from stripe.params import CustomerCreateParams
from stripe.params.billing_portal import SessionCreateParams as PortalSessionParams
from stripe.params.checkout import SessionCreateParams as CheckoutSessionParams
from stripe.params.checkout import SessionCreateParamsLineItem

from licensing_service.contract import stripe as contract
from licensing_service.service.errors import (
    DEFAULT_RETRY_AFTER,
    StripeRejected,
    StripeUnavailable,
)
from licensing_service.service.ports import CheckoutLink, CheckoutPrice, PortalLink

__all__ = [
    "CheckoutLink",
    "CheckoutPrice",
    "PortalLink",
    "StripeBilling",
    "StripeRejected",
    "StripeUnavailable",
]

# A Retry-After beyond this is more likely a bug than advice worth passing on.
_MAX_RETRY_AFTER: Final = 3600
# Stripe masks keys in its messages (``sk_test_****1234``); drop even the mask.
_KEY_SHAPED = re.compile(r"\b(?:sk|rk|pk|whsec)_[A-Za-z0-9_*]+")


class _HTTPXClient(stripe.HTTPXClient):
    """``stripe.HTTPXClient`` that hands httpx the encoded form body as ``content=``.

    stripe 16 passes it as ``data=<str>``, which httpx deprecates with a
    DeprecationWarning on every POST; the library catches any exception from
    httpx as a network error, so under ``-W error`` every POST would turn into
    a retried "connection error".
    """

    def _get_request_args_kwargs(
        self, method: str, url: str, headers: Mapping[str, str], post_data: Any
    ) -> list[Any]:
        args, kwargs = super()._get_request_args_kwargs(method, url, headers, post_data)
        body = kwargs.pop("data", None)
        if isinstance(body, str | bytes):
            kwargs["content"] = body
        elif body:
            kwargs["data"] = body
        return [args, kwargs]


class StripeBilling:
    """Creates Checkout and customer-portal sessions. Owns its HTTP client, injected
    or not: :meth:`aclose` closes it."""

    def __init__(
        self,
        api_key: str,
        api_base: str,
        *,
        timeout_seconds: float = 10.0,
        max_retries: int = 2,
        http_client: stripe.HTTPClient | None = None,
    ) -> None:
        self._http = http_client or _HTTPXClient(timeout=timeout_seconds)
        self._client = stripe.StripeClient(
            api_key,
            # Pinned: the service parses this version's shapes, whatever the library's default.
            stripe_version=contract.API_VERSION,
            # The library appends "/v1/..." to the base as is.
            base_addresses={"api": api_base.rstrip("/")},
            max_network_retries=max_retries,
            http_client=self._http,
        )

    async def create_checkout_session(
        self, *, email: str, price: CheckoutPrice, success_url: str, cancel_url: str
    ) -> CheckoutLink:
        params: CheckoutSessionParams = {
            "mode": "subscription",
            "customer_email": email,
            "line_items": [_line_item(price)],
            # May hold Stripe's literal "{CHECKOUT_SESSION_ID}" placeholder; Stripe fills it in.
            "success_url": success_url,
            "cancel_url": cancel_url,
        }
        try:
            session = await self._client.v1.checkout.sessions.create_async(params)
        except stripe.StripeError as exc:
            raise _translate(exc) from exc
        if not session.url:
            # Only embedded sessions come without a url, and we never ask for one.
            raise StripeUnavailable("Stripe returned a checkout session without a url")
        return CheckoutLink(session_id=session.id, url=session.url)

    async def create_portal_session(
        self, *, stripe_customer_id: str | None, email: str, name: str | None, return_url: str
    ) -> PortalLink:
        created = stripe_customer_id is None
        if stripe_customer_id is None:
            customer_id = await self._create_customer(email, name)
        else:
            customer_id = stripe_customer_id
        params: PortalSessionParams = {"customer": customer_id, "return_url": return_url}
        try:
            session = await self._client.v1.billing_portal.sessions.create_async(params)
        except stripe.StripeError as exc:
            error = _translate(exc)
            if created:
                error.created_customer_id = customer_id
            raise error from exc
        return PortalLink(url=session.url, customer_id=customer_id, created_customer=created)

    async def aclose(self) -> None:
        # Best effort: a failed close must not mask whatever is shutting the service down.
        with contextlib.suppress(Exception):
            # Untyped in the library; closes the httpx.AsyncClient it built.
            await self._http.close_async()  # type: ignore[no-untyped-call]

    async def _create_customer(self, email: str, name: str | None) -> str:
        params: CustomerCreateParams = {"email": email}
        if name:
            params["name"] = name
        try:
            customer = await self._client.v1.customers.create_async(params)
        except stripe.StripeError as exc:
            raise _translate(exc) from exc
        return customer.id


def _line_item(price: CheckoutPrice) -> SessionCreateParamsLineItem:
    if price.price_id is not None:
        return {"price": price.price_id, "quantity": 1}
    return {
        "price_data": {
            "currency": price.currency,
            "unit_amount": price.unit_amount,
            "recurring": {"interval": price.interval},
            "product_data": {"name": price.product_name},
        },
        "quantity": 1,
    }


def _translate(exc: stripe.StripeError) -> StripeUnavailable | StripeRejected:
    """Transient (worth retrying later) or final; the library has already retried."""
    status = exc.http_status
    if isinstance(exc, stripe.APIConnectionError):
        return StripeUnavailable(f"Stripe unreachable ({_cause_name(exc)})")
    if isinstance(exc, stripe.RateLimitError) or status is None or status >= 500 or status == 409:
        label = status if status is not None else "no status"
        return StripeUnavailable(f"Stripe unavailable ({label})", retry_after=_retry_after(exc))
    message = _KEY_SHAPED.sub("[REDACTED]", exc.user_message or f"Stripe refused ({status})")
    return StripeRejected(message, status=status, code=exc.code)


def _cause_name(exc: BaseException) -> str:
    # The library wraps httpx's exception; its class (ConnectError, ReadTimeout) says what failed.
    cause = exc.__cause__
    return type(cause).__name__ if cause is not None else type(exc).__name__


def _retry_after(exc: stripe.StripeError) -> int:
    """Stripe's Retry-After in seconds when it sent one (429, 503), else the default."""
    # The library hands over httpx's headers; a plain dict in other clients, so no case trust.
    for key, value in (exc.headers or {}).items():
        if key.lower() == "retry-after" and value.strip().isdigit():
            return min(max(int(value.strip()), 1), _MAX_RETRY_AFTER)
    return DEFAULT_RETRY_AFTER
