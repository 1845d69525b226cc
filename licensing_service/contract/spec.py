"""Every route with its request and response bodies: the source of ``/openapi.json``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pydantic import BaseModel

from licensing_service.contract import faults as f
from licensing_service.contract import models as m
from licensing_service.contract import routes as p


@dataclass(frozen=True, slots=True)
class RouteSpec:
    method: str
    path: str
    summary: str
    request: type[BaseModel] | None
    responses: Mapping[int, type[BaseModel]]
    text_response: bool = False
    harness_only: bool = False
    tags: tuple[str, ...] = field(default=())


_Responses = dict[int, type[BaseModel]]
_UNIFIED_ERRORS: _Responses = dict.fromkeys(
    (400, 401, 403, 404, 409, 413, 429, 503), m.UnifiedError
)
_LEGACY_VALIDATION: _Responses = {
    200: m.LegacyValidation,
    400: m.LegacyResult,
    401: m.LegacyValidation,
    403: m.LegacyValidation,
    404: m.LegacyValidation,
    413: m.UnifiedError,
    429: m.LegacyResult,
    503: m.LegacyResult,
}
_LEGACY_SESSION: _Responses = {
    **dict.fromkeys((200, 400, 401, 403, 404, 409, 429, 503), m.LegacyResult),
    413: m.UnifiedError,
}

ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec(
        "POST",
        p.VALIDATE_UNIFIED,
        "Validate, instant-validate, or run a session action",
        m.UnifiedRequest,
        {200: m.UnifiedSuccess, **_UNIFIED_ERRORS},
        tags=("licensing",),
    ),
    RouteSpec(
        "POST",
        p.VALIDATE_LEGACY,
        "Legacy license validation",
        m.LegacyValidateRequest,
        _LEGACY_VALIDATION,
        tags=("legacy",),
    ),
    RouteSpec(
        "POST",
        p.INSTANT_VALIDATE_LEGACY,
        "Legacy post-checkout validation",
        m.LegacyInstantRequest,
        _LEGACY_VALIDATION,
        tags=("legacy",),
    ),
    RouteSpec(
        "POST",
        p.SESSION_START,
        "Legacy session start",
        m.LegacySessionStartRequest,
        _LEGACY_SESSION,
        tags=("legacy",),
    ),
    RouteSpec(
        "POST",
        p.SESSION_TAKEOVER,
        "Legacy session takeover",
        m.LegacySessionStartRequest,
        _LEGACY_SESSION,
        tags=("legacy",),
    ),
    RouteSpec(
        "POST",
        p.SESSION_HEARTBEAT,
        "Legacy session heartbeat",
        m.LegacySessionRequest,
        _LEGACY_SESSION,
        tags=("legacy",),
    ),
    RouteSpec(
        "POST",
        p.SESSION_END,
        "Legacy session end",
        m.LegacySessionRequest,
        _LEGACY_SESSION,
        tags=("legacy",),
    ),
    RouteSpec(
        "POST",
        p.WEBHOOK,
        "Stripe webhook (signed with Stripe-Signature)",
        None,
        {200: m.WebhookAck, **dict.fromkeys((400, 409, 413, 500, 503), m.UnifiedError)},
        tags=("billing",),
    ),
    RouteSpec(
        "POST",
        p.CREATE_CHECKOUT_SESSION,
        "Create a Stripe Checkout session (subscription mode)",
        m.CheckoutRequest,
        {200: m.CheckoutLink, **dict.fromkeys((400, 413, 502, 503), m.UnifiedError)},
        tags=("billing",),
    ),
    RouteSpec(
        "POST",
        p.CREATE_PORTAL_SESSION,
        "Create a Stripe billing-portal session for a license holder",
        m.PortalRequest,
        {200: m.PortalLink, **dict.fromkeys((400, 401, 413, 429, 502, 503), m.UnifiedError)},
        tags=("billing",),
    ),
    RouteSpec(
        "GET",
        p.HEALTH,
        "Service health",
        None,
        {200: m.Health, 503: m.Health},
        tags=("operations",),
    ),
    RouteSpec("GET", p.HEALTH_LIVE, "Liveness probe", None, {200: m.Probe}, tags=("operations",)),
    RouteSpec(
        "GET",
        p.HEALTH_READY,
        "Readiness probe",
        None,
        {200: m.Probe, 503: m.Probe},
        tags=("operations",),
    ),
    RouteSpec(
        "GET", p.METRICS, "Prometheus metrics", None, {}, text_response=True, tags=("operations",)
    ),
    RouteSpec("GET", p.OPENAPI, "This document", None, {}, tags=("operations",)),
    RouteSpec(
        "GET",
        p.HARNESS_CLOCK,
        "Read the test clock",
        None,
        {200: m.ClockView},
        harness_only=True,
        tags=("harness",),
    ),
    RouteSpec(
        "POST",
        p.HARNESS_CLOCK,
        "Move the test clock",
        m.ClockRequest,
        {200: m.ClockView, 400: m.UnifiedError},
        harness_only=True,
        tags=("harness",),
    ),
    RouteSpec(
        "GET",
        p.HARNESS_EMAILS,
        "List the email outbox",
        None,
        {200: m.Outbox},
        harness_only=True,
        tags=("harness",),
    ),
    RouteSpec(
        "GET",
        p.HARNESS_FAULTS,
        "The injected faults (database, Stripe, email, webhook)",
        None,
        {200: f.FaultsView},
        harness_only=True,
        tags=("harness",),
    ),
    RouteSpec(
        "POST",
        p.HARNESS_FAULTS,
        "Inject or clear faults; each target named replaces its fault",
        f.FaultsRequest,
        {200: f.FaultsView, 400: m.UnifiedError, 503: m.UnifiedError},
        harness_only=True,
        tags=("harness",),
    ),
)


def routes_for(*, harness: bool) -> tuple[RouteSpec, ...]:
    return tuple(r for r in ROUTES if harness or not r.harness_only)
