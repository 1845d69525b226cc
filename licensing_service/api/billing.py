"""Stripe routes: the webhook, and the checkout and billing-portal links."""

from __future__ import annotations

from licensing_service.api import render as r
from licensing_service.api.app import Handlers
from licensing_service.api.asgi import Handler, Incoming, Outgoing
from licensing_service.contract import routes as paths
from licensing_service.contract import stripe as stripe_contract
from licensing_service.contract.models import CheckoutRequest, PortalRequest
from licensing_service.service.checkout import CheckoutService
from licensing_service.service.errors import LicensingError
from licensing_service.service.webhook_batch import WebhookBatcher

_SIGNATURE = stripe_contract.SIGNATURE_HEADER.lower().encode()


class BillingHandlers:
    def __init__(
        self, handlers: Handlers, webhooks: WebhookBatcher, checkout: CheckoutService
    ) -> None:
        self.handlers = handlers
        self.webhooks = webhooks
        self.checkout_service = checkout

    def routes(self) -> dict[str, dict[str, Handler]]:
        return {
            paths.WEBHOOK: {"POST": self.webhook},
            paths.CREATE_CHECKOUT_SESSION: {"POST": self.checkout},
            paths.CREATE_PORTAL_SESSION: {"POST": self.portal},
        }

    async def checkout(self, request: Incoming) -> Outgoing:
        call = self.handlers.call(request)
        try:
            req = self.handlers.parse(CheckoutRequest, request)
            link = await self.checkout_service.checkout(call, req.email)
        except LicensingError as exc:
            return r.unified_error(exc, call.request_id, call.now, paths.CREATE_CHECKOUT_SESSION)
        return r.checkout_link(link.session_id, link.url)

    async def portal(self, request: Incoming) -> Outgoing:
        call = self.handlers.call(request)
        try:
            req = self.handlers.parse(PortalRequest, request)
            link = await self.checkout_service.portal(call, req.email, req.unlockToken)
        except LicensingError as exc:
            return r.unified_error(exc, call.request_id, call.now, paths.CREATE_PORTAL_SESSION)
        return r.portal_link(link.url)

    async def webhook(self, request: Incoming) -> Outgoing:
        call = self.handlers.call(request)
        try:
            # The raw bytes, exactly as received: the signature covers them. Answered
            # once the delivery's batch has committed (service/webhook_batch.py).
            result = await self.webhooks.receive(call, request.body, request.header(_SIGNATURE))
        except LicensingError as exc:
            return r.unified_error(exc, call.request_id, call.now, paths.WEBHOOK)
        return r.webhook(result)
