"""Errors a use case can end in, typed; ``api/render.py`` maps each to its wire shape.

    LicensingError                  (the root; each carries an ErrorCode)
    ├── InvalidRequest              malformed input, with field-level problems
    ├── InvalidCredentials          unknown email or wrong token
    ├── RateLimited                 too many failed attempts (Retry-After)
    ├── SubscriptionInactive        license exists but is not in good standing
    ├── NoValidSubscription         instant validation found no paid session
    ├── SessionError                SessionConflict, SessionNotFound,
    │                               SessionExpired, SessionKicked,
    │                               SessionEnded, SessionIdTaken
    ├── WebhookError                signature, payload, in progress, handler failed
    ├── StripeError                 not configured, unavailable, refused
    └── Unavailable                 DatabaseUnavailable, BreakerOpen (Retry-After)

``StorageUnavailable`` is not a LicensingError: adapters raise it, and the
service turns it into ``DatabaseUnavailable`` after telling the breaker.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from licensing_service.contract.errors import ErrorCode
from licensing_service.service.ports import CustomerRecord

# Seconds to wait when Stripe said nothing (adapters raise StripeUnavailable).
DEFAULT_RETRY_AFTER = 30


class StorageUnavailable(Exception):
    """The database could not be reached or failed (raised by adapters)."""


class ConstraintViolation(Exception):
    """A uniqueness or integrity rule of the schema refused a write (raised by adapters)."""


class StripeUnavailable(Exception):
    """Network error, timeout, 429 or 5xx that the library's retries did not cure.

    ``created_customer_id`` is set when a portal call created a Stripe customer
    before failing: store it, or the next attempt creates a second one.
    """

    def __init__(
        self,
        message: str,
        *,
        retry_after: int = DEFAULT_RETRY_AFTER,
        created_customer_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.created_customer_id = created_customer_id


class StripeRejected(Exception):
    """Stripe answered 4xx. The message is Stripe's own, with anything key-shaped removed.

    ``code`` is Stripe's error code (``resource_missing``, ``parameter_invalid_…``)
    when it sent one; ``created_customer_id`` as for :class:`StripeUnavailable`.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str | None = None,
        created_customer_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.created_customer_id = created_customer_id


class LicensingError(Exception):
    code: ErrorCode = ErrorCode.INTERNAL_ERROR

    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class InvalidRequest(LicensingError):
    code = ErrorCode.INVALID_REQUEST_FORMAT

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{f}: {m}" for f, m in problems))
        self.problems = problems


class InvalidCredentials(LicensingError):
    code = ErrorCode.INVALID_CREDENTIALS


class RateLimited(LicensingError):
    code = ErrorCode.RATE_LIMITED


class SubscriptionInactive(LicensingError):
    code = ErrorCode.SUBSCRIPTION_INACTIVE

    def __init__(self, message: str, customer: CustomerRecord, now: datetime) -> None:
        super().__init__(message)
        self.customer = customer  # as read: the answer shows its subscription
        self.now = now


class NoValidSubscription(LicensingError):
    code = ErrorCode.NO_VALID_SUBSCRIPTION


class SessionError(LicensingError):
    pass


class SessionConflict(SessionError):
    code = ErrorCode.SESSION_CONFLICT

    def __init__(self, last_seen: datetime, device_info: Any) -> None:
        super().__init__("Another device is currently using this license")
        self.last_seen = last_seen  # the holder's last start or heartbeat
        self.device_info = device_info  # as the holder's device described itself


class SessionNotFound(SessionError):
    code = ErrorCode.SESSION_NOT_FOUND


class SessionExpired(SessionError):
    code = ErrorCode.SESSION_EXPIRED


class SessionKicked(SessionError):
    code = ErrorCode.SESSION_KICKED


class SessionEnded(SessionError):
    code = ErrorCode.SESSION_ENDED


class SessionIdTaken(SessionError):
    code = ErrorCode.SESSION_ID_TAKEN


class Unavailable(LicensingError):
    pass


class DatabaseUnavailable(Unavailable):
    code = ErrorCode.DATABASE_ERROR


class BreakerOpen(Unavailable):
    code = ErrorCode.CIRCUIT_BREAKER_OPEN


class WebhookError(LicensingError):
    pass


class WebhookSignatureInvalid(WebhookError):
    code = ErrorCode.WEBHOOK_SIGNATURE_INVALID


class WebhookPayloadInvalid(InvalidRequest, WebhookError):
    """A verified event this service cannot use, with the field named."""

    code = ErrorCode.WEBHOOK_PAYLOAD_INVALID

    def __init__(self, field: str, message: str) -> None:
        super().__init__([(field, message)])


class WebhookNotConfigured(WebhookError):
    code = ErrorCode.WEBHOOK_NOT_CONFIGURED


class WebhookInProgress(WebhookError):
    code = ErrorCode.WEBHOOK_IN_PROGRESS


class WebhookHandlerFailed(WebhookError):
    code = ErrorCode.WEBHOOK_HANDLER_FAILED


class WebhookRejected(WebhookError):
    """The endpoint is down (the harness's ``webhook.reject`` fault)."""

    code = ErrorCode.WEBHOOK_UNAVAILABLE


class StripeError(LicensingError):
    pass


class StripeNotConfigured(StripeError):
    code = ErrorCode.STRIPE_NOT_CONFIGURED


class StripeUnreachable(StripeError):
    code = ErrorCode.STRIPE_UNAVAILABLE


class StripeRefused(StripeError):
    code = ErrorCode.STRIPE_ERROR
