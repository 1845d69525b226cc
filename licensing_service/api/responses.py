"""Wire rendering: outcomes and errors to POSPal v2 JSON bodies and headers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from pydantic import ValidationError

from licensing_service.api.asgi import Headers, Outgoing
from licensing_service.contract.errors import ERROR_SPECS, ErrorCode
from licensing_service.contract.routes import API_VERSION
from licensing_service.domain.cache_tiers import MINIMAL, CacheTier
from licensing_service.domain.subscription import days_remaining
from licensing_service.service.errors import InvalidRequest, LicensingError
from licensing_service.service.licensing import Validated, display_name, iso

__all__ = ["Headers", "display_name"]

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


# Datetimes in response dicts are left to orjson (OPT_UTC_Z), which writes them
# in C ~6x faster than isoformat(); iso() produces the same text elsewhere.
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
    body.update(exc.extra())
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
        extra = exc.extra()
        if "subscriptionInfo" in extra:
            body["subscriptionInfo"] = extra["subscriptionInfo"]
        body["validatedAt"] = iso(now)
        body["cacheUntil"] = iso(tier.valid_until(now) if tier else now)
    else:
        body = {"success": False, "error": exc.message, "errorCode": exc.code.value}
        if isinstance(exc, InvalidRequest):
            body["fieldErrors"] = field_errors(exc)
        body.update({k: v for k, v in exc.extra().items() if k in ("conflict", "conflictInfo")})
        if exc.retry_after is not None:
            body["retryAfter"] = exc.retry_after
    return json_response(body, status, error_headers(exc))
