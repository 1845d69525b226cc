"""The emails the service sends, as outbox rows (template name + parameters)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from licensing_service.service.ports import NewEmail


class EmailType(StrEnum):
    WELCOME = "welcome"
    PAYMENT_FAILED = "payment_failed"
    SUSPENSION = "suspension"
    REACTIVATION = "reactivation"
    MACHINE_SWITCH = "machine_switch"


SUBJECTS: dict[EmailType, str] = {
    EmailType.WELCOME: "Your POSPal license is ready",
    EmailType.PAYMENT_FAILED: "Your POSPal payment failed",
    EmailType.SUSPENSION: "Your POSPal license is suspended",
    EmailType.REACTIVATION: "Your POSPal license is active again",
    EmailType.MACHINE_SWITCH: "Your POSPal license moved to another device",
}

_BODIES: dict[EmailType, str] = {
    EmailType.WELCOME: "Hello {name},\n\nYour unlock token: {unlock_token}\n",
    EmailType.PAYMENT_FAILED: "Hello {name},\n\nWe could not collect your payment.\n",
    EmailType.SUSPENSION: "Hello {name},\n\nYour license is suspended until payment succeeds.\n",
    EmailType.REACTIVATION: "Hello {name},\n\nPayment received: your license is active again.\n",
    EmailType.MACHINE_SWITCH: (
        "Hello {name},\n\nYour license is now used on {device} ({reason}) at {at}.\n"
        "If this was not you, contact support.\n"
    ),
}


def compose(
    email_type: EmailType,
    recipient: str,
    customer_id: int | None,
    dedupe_key: str | None = None,
    **params: Any,
) -> NewEmail:
    return NewEmail(email_type.value, recipient, customer_id, dict(params), dedupe_key)


def render(email_type: str, payload: dict[str, Any]) -> tuple[str, str]:
    """Subject and plain-text body. Missing parameters render as empty."""
    kind = EmailType(email_type)
    body = _BODIES[kind].format_map(_Blank(payload))
    return SUBJECTS[kind], body


class _Blank(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return ""
