"""Error codes of the wire contract, with their HTTP status and classification.

Codes and statuses follow POSPal v2 where POSPal has the code; the rest are
ours. ``retryable`` is true exactly for the codes a client should retry
(after ``Retry-After`` when the response carries one).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ErrorCode(StrEnum):
    INVALID_REQUEST_FORMAT = "INVALID_REQUEST_FORMAT"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"
    NOT_FOUND = "NOT_FOUND"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    INVALID_CREDENTIALS = "INVALID_CREDENTIALS"
    SUBSCRIPTION_INACTIVE = "SUBSCRIPTION_INACTIVE"
    NO_VALID_SUBSCRIPTION = "NO_VALID_SUBSCRIPTION"
    SESSION_CONFLICT = "SESSION_CONFLICT"
    SESSION_NOT_FOUND = "SESSION_NOT_FOUND"
    SESSION_EXPIRED = "SESSION_EXPIRED"
    SESSION_KICKED = "SESSION_KICKED"
    SESSION_ENDED = "SESSION_ENDED"
    SESSION_ID_TAKEN = "SESSION_ID_TAKEN"
    RATE_LIMITED = "RATE_LIMITED"
    DATABASE_ERROR = "DATABASE_ERROR"
    CIRCUIT_BREAKER_OPEN = "CIRCUIT_BREAKER_OPEN"
    INTERNAL_ERROR = "INTERNAL_ERROR"
    WEBHOOK_SIGNATURE_INVALID = "WEBHOOK_SIGNATURE_INVALID"
    WEBHOOK_PAYLOAD_INVALID = "WEBHOOK_PAYLOAD_INVALID"
    WEBHOOK_NOT_CONFIGURED = "WEBHOOK_NOT_CONFIGURED"
    WEBHOOK_IN_PROGRESS = "WEBHOOK_IN_PROGRESS"
    WEBHOOK_HANDLER_FAILED = "WEBHOOK_HANDLER_FAILED"
    WEBHOOK_UNAVAILABLE = "WEBHOOK_UNAVAILABLE"
    STRIPE_NOT_CONFIGURED = "STRIPE_NOT_CONFIGURED"
    STRIPE_UNAVAILABLE = "STRIPE_UNAVAILABLE"
    STRIPE_ERROR = "STRIPE_ERROR"


@dataclass(frozen=True, slots=True)
class ErrorSpec:
    status: int
    category: str
    severity: str
    retryable: bool


ERROR_SPECS: dict[ErrorCode, ErrorSpec] = {
    ErrorCode.INVALID_REQUEST_FORMAT: ErrorSpec(400, "authentication", "low", False),
    ErrorCode.PAYLOAD_TOO_LARGE: ErrorSpec(413, "general", "low", False),
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: ErrorSpec(415, "general", "low", False),
    ErrorCode.NOT_FOUND: ErrorSpec(404, "general", "low", False),
    ErrorCode.METHOD_NOT_ALLOWED: ErrorSpec(405, "general", "low", False),
    ErrorCode.INVALID_CREDENTIALS: ErrorSpec(401, "authentication", "high", False),
    ErrorCode.SUBSCRIPTION_INACTIVE: ErrorSpec(403, "subscription", "high", False),
    ErrorCode.NO_VALID_SUBSCRIPTION: ErrorSpec(404, "subscription", "low", False),
    ErrorCode.SESSION_CONFLICT: ErrorSpec(409, "session", "medium", False),
    ErrorCode.SESSION_NOT_FOUND: ErrorSpec(404, "session", "medium", False),
    ErrorCode.SESSION_EXPIRED: ErrorSpec(404, "session", "medium", False),
    ErrorCode.SESSION_KICKED: ErrorSpec(409, "session", "medium", False),
    ErrorCode.SESSION_ENDED: ErrorSpec(404, "session", "medium", False),
    ErrorCode.SESSION_ID_TAKEN: ErrorSpec(409, "session", "medium", False),
    ErrorCode.RATE_LIMITED: ErrorSpec(429, "authentication", "medium", True),
    ErrorCode.DATABASE_ERROR: ErrorSpec(503, "system", "high", True),
    ErrorCode.CIRCUIT_BREAKER_OPEN: ErrorSpec(503, "system", "high", True),
    ErrorCode.INTERNAL_ERROR: ErrorSpec(500, "system", "high", True),
    # Stripe retries any non-2xx webhook answer for days; "retryable" says
    # whether a retry can succeed.
    ErrorCode.WEBHOOK_SIGNATURE_INVALID: ErrorSpec(400, "webhook", "high", False),
    ErrorCode.WEBHOOK_PAYLOAD_INVALID: ErrorSpec(400, "webhook", "medium", False),
    ErrorCode.WEBHOOK_NOT_CONFIGURED: ErrorSpec(503, "webhook", "high", True),
    ErrorCode.WEBHOOK_IN_PROGRESS: ErrorSpec(409, "webhook", "low", True),
    ErrorCode.WEBHOOK_HANDLER_FAILED: ErrorSpec(500, "webhook", "high", True),
    ErrorCode.WEBHOOK_UNAVAILABLE: ErrorSpec(503, "webhook", "high", True),
    ErrorCode.STRIPE_NOT_CONFIGURED: ErrorSpec(503, "billing", "high", False),
    ErrorCode.STRIPE_UNAVAILABLE: ErrorSpec(503, "billing", "medium", True),
    ErrorCode.STRIPE_ERROR: ErrorSpec(502, "billing", "high", False),
}
