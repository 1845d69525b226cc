"""Stripe routes: the webhook, and the checkout and billing-portal links."""

from __future__ import annotations

from typing import Any

from licensing_service.api import responses as r
from licensing_service.api.app import Handlers
from licensing_service.api.asgi import Handler, Incoming, Outgoing
from licensing_service.contract import routes as paths
from licensing_service.contract import stripe as stripe_contract
from licensing_service.service.errors import LicensingError
from licensing_service.service.webhooks import WebhookService

_SIGNATURE = stripe_contract.SIGNATURE_HEADER.lower().encode()


class WebhookHandlers:
    def __init__(self, handlers: Handlers, webhooks: WebhookService) -> None:
        self.handlers = handlers
        self.webhooks = webhooks

    def routes(self) -> dict[str, dict[str, Handler]]:
        return {paths.WEBHOOK: {"POST": self.webhook}}

    def webhook(self, request: Incoming) -> Outgoing:
        call = self.handlers.call(request)
        try:
            # The raw bytes, exactly as received: the signature covers them.
            result = self.webhooks.receive(call, request.body, request.header(_SIGNATURE))
        except LicensingError as exc:
            return r.unified_error(exc, call.request_id, call.now, paths.WEBHOOK)
        body: dict[str, Any] = {
            "received": True,
            "eventId": result.event_id,
            "type": result.event_type,
            "outcome": result.outcome,
            "idempotent": result.outcome == "duplicate",
            "unhandled": result.outcome == "unhandled",
        }
        return r.json_response(body, 200, [r.NO_STORE])
