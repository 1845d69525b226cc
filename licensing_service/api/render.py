"""Every wire shape the service answers: typed outcomes and errors to POSPal
v2 JSON bodies and headers. The one module that knows the response field
names; use cases return dataclasses and raise typed errors, handlers parse,
call one use case, and hand the outcome here.

Datetimes in response dicts are mostly left to orjson (``OPT_UTC_Z``), which
writes them in C ~6x faster than ``isoformat()``; :func:`iso` writes the same
text where a string is needed up front. Which fields are strings and which
are datetimes is part of the wire format (golden-tested byte for byte).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from licensing_service.api.asgi import Headers, Outgoing
from licensing_service.contract.errors import ERROR_SPECS, ErrorCode
from licensing_service.contract.routes import API_VERSION, VALIDATE_UNIFIED
from licensing_service.domain.cache_tiers import MINIMAL, CacheTier
from licensing_service.domain.subscription import days_remaining, standing
from licensing_service.service.errors import (
    InvalidRequest,
    LicensingError,
    SessionConflict,
    SubscriptionInactive,
)
from licensing_service.service.licensing import Call, SessionGranted, Validated, display_name
from licensing_service.service.ports import CustomerRecord
from licensing_service.service.webhooks import WebhookResult

__all__ = ["Headers"]

JSON_TYPE = (b"content-type", b"application/json")
NO_STORE = (b"cache-control", b"no-store")
API_VERSION_HEADER = (b"x-api-version", API_VERSION.encode())


def json_response(
    body: dict[str, Any], status: int = 200, headers: Headers | None = None
) -> Outgoing:
    encoded = orjson.dumps(body, option=orjson.OPT_UTC_Z)
    return Outgoing(status, encoded, [JSON_TYPE, *headers] if headers else [JSON_TYPE])


def cache_headers(seconds: int, strategy: str) -> Headers:
    return [
        (b"cache-control", b"private, max-age=%d" % seconds),
        API_VERSION_HEADER,
        (b"x-cache-strategy", strategy.encode()),
    ]


def iso(when: datetime | None) -> str | None:
    """ISO-8601 in UTC with a Z, exactly as orjson writes the datetimes of a response."""
    if when is None:
        return None
    return when.isoformat().replace("+00:00", "Z")


def caching(tier: CacheTier, now: datetime) -> dict[str, Any]:
    return {
        "strategy": tier.strategy,
        "duration": tier.seconds,
        "validUntil": tier.valid_until(now),
        "recommendation": tier.recommendation,
        "nextCheck": tier.next_check(now),
    }


def subscription_view(v: Validated, now: datetime) -> dict[str, Any]:
    c = v.customer
    end = c.current_period_end
    next_billing = c.next_billing_date or end
    return {
        "status": v.standing.reported_status,
        "id": c.subscription_id,
        "isActive": v.standing.is_active,
        "currentPeriodEnd": end,
        "nextBillingDate": next_billing,
        "daysRemaining": days_remaining(next_billing, now),
    }


def invalid_request(exc: ValidationError) -> InvalidRequest:
    """Pydantic's errors as (dotted field, message) pairs, without echoing input."""
    problems = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(part) for part in err["loc"]) or "body"
        problems.append((loc, err["msg"]))
    return InvalidRequest(problems)


def field_errors(exc: InvalidRequest) -> list[dict[str, str]]:
    return [{"field": f, "message": m} for f, m in exc.problems]


def error_extra(exc: LicensingError) -> dict[str, Any]:
    """Code-specific keys at the top level of an error envelope."""
    if isinstance(exc, SubscriptionInactive):
        return {"subscriptionInfo": subscription_info(exc.customer, exc.now)}
    if isinstance(exc, SessionConflict):
        info = {"deviceInfo": exc.device_info, "lastSeen": iso(exc.last_seen) or ""}
        return {"conflict": True, "conflictInfo": info}
    return {}


def error_body(
    exc: LicensingError, request_id: str, now: datetime, endpoint: str
) -> dict[str, Any]:
    spec = ERROR_SPECS[exc.code]
    message: str | list[str] = exc.message
    body: dict[str, Any] = {"success": False, "timestamp": iso(now), "requestId": request_id}
    if isinstance(exc, InvalidRequest):
        message = [f"{field}: {problem}" for field, problem in exc.problems]
    body["error"] = {
        "code": exc.code.value,
        "message": message,
        "category": spec.category,
        "severity": spec.severity,
        "retryable": spec.retryable,
    }
    if isinstance(exc, InvalidRequest):
        body["fieldErrors"] = field_errors(exc)
    body.update(error_extra(exc))
    if exc.retry_after is not None:
        body["retryAfter"] = exc.retry_after
    body["metadata"] = {"apiVersion": API_VERSION, "endpoint": endpoint}
    return body


def error_headers(exc: LicensingError) -> Headers:
    if exc.code is ErrorCode.SUBSCRIPTION_INACTIVE:
        # The "minimal" tier: a device may trust a suspension for 5 minutes.
        headers = cache_headers(MINIMAL.seconds, MINIMAL.strategy)
    else:
        headers = [NO_STORE, API_VERSION_HEADER]
    if exc.retry_after is not None:
        headers.append((b"retry-after", str(exc.retry_after).encode()))
    return headers


def unified_error(exc: LicensingError, request_id: str, now: datetime, endpoint: str) -> Outgoing:
    body = error_body(exc, request_id, now, endpoint)
    if exc.code is ErrorCode.SUBSCRIPTION_INACTIVE:
        body["caching"] = caching(MINIMAL, now)
    return json_response(body, ERROR_SPECS[exc.code].status, error_headers(exc))


# Legacy bodies: /validate and /instant-validate answer credential and
# subscription problems in their own {valid: false} shape; everything else
# (bad input, rate limits, outages) uses {success: false}.
_VALIDITY_CODES = {
    ErrorCode.INVALID_CREDENTIALS,
    ErrorCode.SUBSCRIPTION_INACTIVE,
    ErrorCode.NO_VALID_SUBSCRIPTION,
}


def legacy_error(exc: LicensingError, now: datetime, *, validation_shape: bool) -> Outgoing:
    status = ERROR_SPECS[exc.code].status
    body: dict[str, Any]
    if validation_shape and exc.code in _VALIDITY_CODES:
        tier = MINIMAL if exc.code is ErrorCode.SUBSCRIPTION_INACTIVE else None
        body = {"valid": False, "error": exc.message, "errorCode": exc.code.value}
        if isinstance(exc, SubscriptionInactive):
            body["subscriptionInfo"] = subscription_info(exc.customer, exc.now)
        body["validatedAt"] = iso(now)
        body["cacheUntil"] = iso(tier.valid_until(now) if tier else now)
    else:
        body = {"success": False, "error": exc.message, "errorCode": exc.code.value}
        if isinstance(exc, InvalidRequest):
            body["fieldErrors"] = field_errors(exc)
        if isinstance(exc, SessionConflict):
            body.update(error_extra(exc))
        if exc.retry_after is not None:
            body["retryAfter"] = exc.retry_after
    return json_response(body, status, error_headers(exc))


# ------------------------------------------------------------- outcomes

SESSION_CACHE = cache_headers(300, "none")


def subscription_info(customer: CustomerRecord, now: datetime) -> dict[str, Any]:
    """POSPal's detailed subscription status object."""
    good = standing(customer.subscription_status, customer.current_period_end, now)
    period_end = customer.current_period_end
    return {
        "isActive": good.is_active,
        "status": good.reported_status,
        "billingPeriodExpired": period_end is not None and period_end <= now,
        "subscriptionId": customer.subscription_id,
        "lastSeen": iso(customer.last_seen),
        "lastValidation": iso(customer.last_validation),
        "currentPeriodEnd": iso(period_end),
        "nextBillingDate": iso(customer.next_billing_date),
        "daysRemaining": days_remaining(customer.next_billing_date or period_end, now),
    }


def device_view(device_info: Any, now: datetime) -> dict[str, str]:
    if isinstance(device_info, BaseModel):
        device_info = device_info.model_dump()
    hostname = device_info.get("hostname") if isinstance(device_info, dict) else None
    return {"current": hostname or "Unknown Device", "registered": iso(now) or ""}


def envelope(call: Call, operation: str, **parts: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "success": True,
        "timestamp": call.now,
        "requestId": call.request_id,
        "degraded": parts.pop("degraded", False),
    }
    body.update(parts)
    body["metadata"] = {
        "apiVersion": API_VERSION,
        "operation": operation,
        "endpoint": VALIDATE_UNIFIED,
    }
    return body


def unified_success(
    body: dict[str, Any], response_ms: float, breaker_state: str, headers: Headers
) -> Outgoing:
    body["performance"] = {"responseTime": response_ms, "circuitBreakerState": breaker_state}
    return json_response(body, 200, headers)


def validated(call: Call, v: Validated, kind: str, device_info: Any) -> dict[str, Any]:
    """A successful validation (``kind`` standard or instant) in the unified shape."""
    customer = v.customer
    session: dict[str, Any] = {
        "allowed": True,
        "sessionId": None,
        "machineChanged": v.machine_changed,
    }
    if v.fingerprint_processed:
        session["deviceInfo"] = device_view(device_info, call.now)
    return envelope(
        call,
        "validate" if kind == "standard" else kind,
        degraded=v.degraded,
        validation={
            "valid": True,
            "status": v.standing.reported_status,
            "validationType": kind,
            "customer": {
                "id": customer.id,
                "email": customer.email,
                "name": display_name(customer.name, customer.email),
            },
        },
        subscription=subscription_view(v, call.now),
        session=session,
        caching=caching(v.tier, call.now),
    )


def instant(call: Call, v: Validated, stripe_session_id: str, device_info: Any) -> dict[str, Any]:
    body = validated(call, v, "instant", device_info)
    body["subscription"]["unlockToken"] = v.customer.unlock_token
    body["session"]["sessionId"] = stripe_session_id
    return body


def tier_headers(v: Validated) -> Headers:
    return cache_headers(v.tier.seconds, v.tier.strategy)


def granted(call: Call, g: SessionGranted) -> dict[str, Any]:
    session: dict[str, Any] = {
        "allowed": True,
        "sessionId": g.session_id,
        "status": "active",
        "deviceInfo": device_view(g.device_info, call.now),
    }
    if g.takeover:
        session["takeover"] = True
    kind = "session_takeover" if g.takeover else "session_start"
    return envelope(
        call,
        "session",
        validation={"valid": True, "status": "active", "validationType": kind},
        session=session,
    )


def heartbeat(call: Call, session_id: str) -> dict[str, Any]:
    view = {
        "allowed": True,
        "sessionId": session_id,
        "status": "active",
        "lastHeartbeat": iso(call.now),
    }
    return envelope(call, "session", session=view)


def ended(call: Call, session_id: str) -> dict[str, Any]:
    view = {"allowed": False, "sessionId": session_id, "status": "ended", "endedAt": iso(call.now)}
    return envelope(call, "session", session=view)


# ----------------------------------------------------------- legacy shapes


def legacy_validated(call: Call, v: Validated) -> Outgoing:
    body = _legacy_valid(call, v)
    body["machineChanged"] = v.machine_changed
    return _legacy_validation_response(call, v, body)


def legacy_instant(call: Call, v: Validated) -> Outgoing:
    body = _legacy_valid(call, v)
    body["unlockToken"] = v.customer.unlock_token
    return _legacy_validation_response(call, v, body)


def _legacy_valid(call: Call, v: Validated) -> dict[str, Any]:
    return {
        "valid": True,
        "customerName": display_name(v.customer.name, v.customer.email),
        "customerId": v.customer.id,
        "subscriptionInfo": subscription_info(v.customer, call.now),
        "degraded": v.degraded,
    }


def _legacy_validation_response(call: Call, v: Validated, body: dict[str, Any]) -> Outgoing:
    body["validatedAt"] = iso(call.now)
    body["cacheUntil"] = iso(v.tier.valid_until(call.now))
    headers = tier_headers(v)
    headers.append((b"x-cache-duration", str(v.tier.seconds).encode()))
    return json_response(body, 200, headers)


def legacy_session_started(session_id: str) -> Outgoing:
    return json_response({"success": True, "sessionId": session_id}, 200, SESSION_CACHE)


def legacy_heartbeat(call: Call, session_id: str) -> Outgoing:
    body = {"success": True, "sessionId": session_id, "timestamp": iso(call.now)}
    return json_response(body, 200, SESSION_CACHE)


def legacy_ended(session_id: str) -> Outgoing:
    # The disconnection email of POSPal's end route is not sent (sendEmail is accepted).
    body = {"success": True, "sessionId": session_id, "emailSent": False}
    return json_response(body, 200, SESSION_CACHE)


# ------------------------------------------------------------------ Stripe


def webhook(result: WebhookResult) -> Outgoing:
    body: dict[str, Any] = {
        "received": True,
        "eventId": result.event_id,
        "type": result.event_type,
        "outcome": result.outcome,
        "idempotent": result.outcome == "duplicate",
        "unhandled": result.outcome == "unhandled",
    }
    return json_response(body, 200, [NO_STORE])


def checkout_link(session_id: str, url: str) -> Outgoing:
    return json_response({"success": True, "sessionId": session_id, "url": url}, 200, [NO_STORE])


def portal_link(url: str) -> Outgoing:
    return json_response({"success": True, "url": url}, 200, [NO_STORE])
