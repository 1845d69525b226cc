"""Checkout and billing-portal links: the service's outgoing Stripe calls.

Async because they wait on Stripe; the database work around them is
synchronous and never spans an ``await``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from licensing_service.domain.credentials import normalize_email
from licensing_service.service.errors import (
    StripeNotConfigured,
    StripeRefused,
    StripeRejected,
    StripeUnavailable,
    StripeUnreachable,
)
from licensing_service.service.licensing import Call, LicensingService
from licensing_service.service.ports import BillingApi, CheckoutLink, CheckoutPrice, PortalLink

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReturnUrls:
    success: str
    cancel: str
    portal: str


class CheckoutService:
    def __init__(
        self,
        licensing: LicensingService,
        api: BillingApi | None,
        price: CheckoutPrice,
        urls: ReturnUrls,
    ) -> None:
        self.licensing = licensing
        self.api = api
        self.price = price
        self.urls = urls

    async def checkout(self, call: Call, email: str) -> CheckoutLink:
        api = self._require_api()
        try:
            return await api.create_checkout_session(
                email=normalize_email(email),
                price=self.price,
                success_url=self.urls.success,
                cancel_url=self.urls.cancel,
            )
        except StripeUnavailable as exc:
            raise _unreachable(exc) from exc
        except StripeRejected as exc:
            raise _refused(exc) from exc

    async def portal(self, call: Call, email: str, token: str) -> PortalLink:
        api = self._require_api()
        customer = self.licensing.authenticate(call, email, token, "billing_portal")
        with self.licensing.transaction(call.now) as uow:
            stripe_id = uow.billing.stripe_customer_id(customer.id)
        try:
            link = await api.create_portal_session(
                stripe_customer_id=stripe_id,
                email=customer.email,
                name=customer.name,
                return_url=self.urls.portal,
            )
        except (StripeUnavailable, StripeRejected) as exc:
            if exc.created_customer_id is not None:
                # Keep it, or the next attempt creates a second Stripe customer.
                self._remember(call, customer.id, exc.created_customer_id)
            if isinstance(exc, StripeUnavailable):
                raise _unreachable(exc) from exc
            raise _refused(exc) from exc
        if link.created_customer:
            self._remember(call, customer.id, link.customer_id)
        return link

    def _remember(self, call: Call, customer_id: int, stripe_customer_id: str) -> None:
        with self.licensing.transaction(call.now) as uow:
            uow.billing.link(customer_id, stripe_customer_id, call.now)

    def _require_api(self) -> BillingApi:
        if self.api is None:
            raise StripeNotConfigured("Stripe is not configured (STRIPE_SECRET_KEY)")
        return self.api


def _unreachable(exc: StripeUnavailable) -> StripeUnreachable:
    log.warning("Stripe unavailable: %s", exc)
    return StripeUnreachable(
        "Stripe is unreachable right now; retry later", retry_after=exc.retry_after
    )


def _refused(exc: StripeRejected) -> StripeRefused:
    log.warning("Stripe refused a request (%s): %s", exc.status, exc)
    return StripeRefused(f"Stripe refused the request: {exc}")
