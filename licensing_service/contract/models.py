"""Request and response bodies of the wire contract (POSPal v2 compatible).

Request models validate what the service accepts. Response models document
what it sends (and build ``/openapi.json``); the service's own tests validate
every response it produces against them, with unknown keys forbidden, so the
two cannot drift apart.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Email = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=3, max_length=254, pattern=r"^[^\s@]+@[^\s@]+\.[^\s@]+$"
    ),
]
UnlockToken = Annotated[str, StringConstraints(min_length=1, max_length=64)]
# Printable ASCII without spaces: session ids are logged and used as keys.
SessionId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[!-~]+$")]
StripeSessionId = Annotated[str, StringConstraints(min_length=1, max_length=255)]
Fingerprint = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
Operation = Literal["validate", "instant", "session"]
SessionAction = Literal["start", "heartbeat", "end", "takeover"]


class _Request(BaseModel):
    # Strict: "true" is not a boolean and 5 is not a string. Unknown keys are
    # ignored because deployed clients send extras (POSPal's `options`).
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class DeviceInfo(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow", frozen=True)
    hostname: Annotated[str, StringConstraints(max_length=255)] | None = None


class Credentials(_Request):
    email: Email | None = None
    token: UnlockToken | None = None
    sessionId: SessionId | None = None
    stripeSessionId: StripeSessionId | None = None


class Device(_Request):
    machineFingerprint: Fingerprint | None = None
    skipMachineUpdate: bool = False
    deviceInfo: DeviceInfo | None = None


class UnifiedRequest(_Request):
    """``POST /validate-unified``. Which fields are required depends on the
    operation; see :func:`missing_fields`."""

    operation: Operation
    action: SessionAction | None = None
    credentials: Credentials
    device: Device = Device()
    options: dict[str, Any] | None = None


def missing_fields(req: UnifiedRequest) -> list[str]:
    """Dotted names of the fields this operation needs but did not get."""
    creds, missing = req.credentials, []
    if creds.email is None:
        missing.append("credentials.email")
    if req.operation == "instant":
        if creds.stripeSessionId is None:
            missing.append("credentials.stripeSessionId")
        if req.device.machineFingerprint is None:
            missing.append("device.machineFingerprint")
        return missing
    if creds.token is None:
        missing.append("credentials.token")
    if req.operation == "session":
        if req.action is None:
            missing.append("action")
        if creds.sessionId is None:
            missing.append("credentials.sessionId")
        if req.action in ("start", "takeover") and req.device.machineFingerprint is None:
            missing.append("device.machineFingerprint")
    return missing


class LegacyValidateRequest(_Request):
    email: Email
    token: UnlockToken
    machineFingerprint: Fingerprint | None = None
    skipMachineUpdate: bool = False


class LegacyInstantRequest(_Request):
    email: Email
    stripeSessionId: StripeSessionId
    machineFingerprint: Fingerprint


class LegacySessionStartRequest(_Request):
    """``/session/start`` and ``/session/takeover``."""

    email: Email
    token: UnlockToken
    machineFingerprint: Fingerprint
    sessionId: SessionId
    deviceInfo: DeviceInfo | None = None


class LegacySessionRequest(_Request):
    """``/session/heartbeat`` and ``/session/end``."""

    sessionId: SessionId
    sendEmail: bool = False


class ClockRequest(_Request):
    """``POST /__harness__/clock``: exactly one of the two."""

    advance_seconds: float | None = Field(default=None, allow_inf_nan=False)
    set: datetime | None = None


class CheckoutRequest(_Request):
    """``POST /create-checkout-session``: start a subscription checkout."""

    email: Email
    name: Annotated[str, StringConstraints(max_length=255)] | None = None


class PortalRequest(_Request):
    """``POST /create-portal-session``: a billing-portal link for a license holder."""

    email: Email
    unlockToken: UnlockToken


# ---------------------------------------------------------------- responses


class _Response(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Metadata(_Response):
    apiVersion: Literal["2.0"]
    operation: str | None = None
    endpoint: str


class Caching(_Response):
    strategy: Literal["aggressive", "moderate", "conservative", "minimal", "none"]
    duration: int
    validUntil: str
    recommendation: str
    nextCheck: str


class CustomerRef(_Response):
    id: int
    email: str
    name: str | None


class ValidationInfo(_Response):
    valid: bool
    status: str
    validationType: str
    customer: CustomerRef | None = None


class SubscriptionView(_Response):
    status: str
    id: str | None
    isActive: bool
    currentPeriodEnd: str | None = None
    nextBillingDate: str | None = None
    daysRemaining: int | None = None
    unlockToken: str | None = None


class DeviceView(_Response):
    current: str
    registered: str


class SessionView(_Response):
    allowed: bool
    sessionId: str | None
    status: str | None = None
    machineChanged: bool | None = None
    deviceInfo: DeviceView | None = None
    lastHeartbeat: str | None = None
    endedAt: str | None = None
    takeover: bool | None = None


class Performance(_Response):
    responseTime: float
    circuitBreakerState: str


class UnifiedSuccess(_Response):
    success: Literal[True]
    timestamp: str
    requestId: str
    degraded: bool
    validation: ValidationInfo | None = None
    subscription: SubscriptionView | None = None
    session: SessionView | None = None
    caching: Caching | None = None
    performance: Performance
    metadata: Metadata


class ErrorBody(_Response):
    code: str
    # An array of "field: problem" lines for INVALID_REQUEST_FORMAT (as POSPal
    # sends it), a sentence otherwise.
    message: str | list[str]
    category: str
    severity: str
    retryable: bool


class FieldError(_Response):
    field: str
    message: str


class ConflictInfo(_Response):
    deviceInfo: dict[str, Any] | None
    lastSeen: str


class SubscriptionInfo(_Response):
    """POSPal's detailed subscription status (legacy bodies, SUBSCRIPTION_INACTIVE)."""

    isActive: bool
    status: str
    billingPeriodExpired: bool
    subscriptionId: str | None
    lastSeen: str | None
    lastValidation: str | None
    currentPeriodEnd: str | None
    nextBillingDate: str | None
    daysRemaining: int | None


class UnifiedError(_Response):
    success: Literal[False]
    timestamp: str
    requestId: str
    error: ErrorBody
    fieldErrors: list[FieldError] | None = None
    conflict: bool | None = None
    conflictInfo: ConflictInfo | None = None
    subscriptionInfo: SubscriptionInfo | None = None
    # SUBSCRIPTION_INACTIVE only: the "minimal" tier a device may cache it for.
    caching: Caching | None = None
    retryAfter: int | None = None
    metadata: Metadata


class LegacyValidation(_Response):
    """``/validate`` and ``/instant-validate`` answers, valid or not."""

    valid: bool
    customerName: str | None = None
    customerId: int | None = None
    unlockToken: str | None = None
    subscriptionInfo: SubscriptionInfo | None = None
    machineChanged: bool | None = None
    error: str | None = None
    errorCode: str | None = None
    degraded: bool = False
    validatedAt: str
    cacheUntil: str


class LegacyResult(_Response):
    """Legacy session answers and legacy request errors."""

    success: bool
    sessionId: str | None = None
    timestamp: str | None = None
    emailSent: bool | None = None
    error: str | None = None
    errorCode: str | None = None
    fieldErrors: list[FieldError] | None = None
    conflict: bool | None = None
    conflictInfo: ConflictInfo | None = None
    retryAfter: int | None = None


class DatabaseHealth(_Response):
    status: Literal["healthy", "unhealthy"]
    responseTime: float | None


class Services(_Response):
    database: DatabaseHealth


class BreakerView(_Response):
    state: Literal["CLOSED", "OPEN", "HALF_OPEN"]
    failures: int
    failureCount: int
    lastFailureTime: str | None
    nextAttempt: str | None


class SystemView(_Response):
    worker: str
    version: str
    environment: str


class HttpPathView(_Response):
    """Which HTTP path serves: the inline accelerator, or ASGI and why."""

    path: Literal["inline", "asgi"]
    reason: str | None


class ActiveFaults(_Response):
    active: list[str]  # "db.errors", "stripe.latency_ms", ... (contract/faults.py)


class Health(_Response):
    timestamp: str
    status: Literal["healthy", "degraded", "unhealthy"]
    services: Services
    circuitBreaker: BreakerView
    system: SystemView
    http: HttpPathView
    # Harness mode (--test-clock) only: the injected faults on, by name.
    faults: ActiveFaults | None = None


class Probe(_Response):
    status: Literal["ok", "unavailable"]
    reason: str | None = None


class ClockView(_Response):
    now: str
    offset_seconds: float


class OutboxEmail(_Response):
    id: int
    customer_id: int | None
    email_type: str
    recipient: str
    payload: dict[str, Any]
    delivery_status: str
    attempts: int
    next_attempt_at: str
    last_error: str | None
    created_at: str
    delivered_at: str | None


class Outbox(_Response):
    emails: list[OutboxEmail]


class WebhookAck(_Response):
    """``POST /webhook`` accepted the delivery (2xx: Stripe stops retrying it)."""

    received: Literal[True]
    eventId: str
    type: str
    # applied | stale | recorded | ignored | unhandled | duplicate
    outcome: str
    idempotent: bool
    unhandled: bool


class CheckoutLink(_Response):
    success: Literal[True]
    sessionId: str
    url: str


class PortalLink(_Response):
    success: Literal[True]
    url: str
