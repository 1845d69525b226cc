"""Stripe's side of the contract: the pinned API version, the event types the
service handles, and the webhook signing scheme.

The scheme (``Stripe-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>...]``,
each ``v1`` an HMAC-SHA256 of ``"{t}.{raw body}"`` under one endpoint
secret) is Stripe's; it lives here because both sides use it: the service
verifies, ``fixtures/`` signs. Standard library only, so a fake Stripe does
not need the service's dependencies.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

# The API version of the installed ``stripe`` library (a test keeps them equal);
# generated payloads have this shape and the service reads this shape.
API_VERSION: Final = "2026-10-28.endive"

SIGNATURE_HEADER: Final = "Stripe-Signature"
SIGNATURE_SCHEME: Final = "v1"
# Stripe's default: a signature older, or further in the future, than this is refused.
TOLERANCE_SECONDS: Final = 300

CHECKOUT_COMPLETED: Final = "checkout.session.completed"
SUBSCRIPTION_CREATED: Final = "customer.subscription.created"
SUBSCRIPTION_UPDATED: Final = "customer.subscription.updated"
SUBSCRIPTION_DELETED: Final = "customer.subscription.deleted"
SUBSCRIPTION_PAUSED: Final = "customer.subscription.paused"
SUBSCRIPTION_RESUMED: Final = "customer.subscription.resumed"
INVOICE_PAID: Final = "invoice.paid"
INVOICE_PAYMENT_SUCCEEDED: Final = "invoice.payment_succeeded"
INVOICE_PAYMENT_FAILED: Final = "invoice.payment_failed"
CHARGE_REFUNDED: Final = "charge.refunded"
CUSTOMER_DELETED: Final = "customer.deleted"

SUBSCRIPTION_EVENTS: Final = frozenset(
    {
        SUBSCRIPTION_CREATED,
        SUBSCRIPTION_UPDATED,
        SUBSCRIPTION_DELETED,
        SUBSCRIPTION_PAUSED,
        SUBSCRIPTION_RESUMED,
    }
)
HANDLED_EVENTS: Final = frozenset(
    {
        CHECKOUT_COMPLETED,
        *SUBSCRIPTION_EVENTS,
        INVOICE_PAID,
        INVOICE_PAYMENT_SUCCEEDED,
        INVOICE_PAYMENT_FAILED,
        CHARGE_REFUNDED,
        CUSTOMER_DELETED,
    }
)


class SignatureError(ValueError):
    """Why a ``Stripe-Signature`` header was refused (safe to show the sender)."""


@dataclass(frozen=True, slots=True)
class ParsedSignature:
    timestamp: int
    signatures: tuple[str, ...]


def compute_signature(payload: bytes, secret: str, timestamp: int) -> str:
    signed = str(timestamp).encode() + b"." + payload
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signature_header(payload: bytes, secrets: Sequence[str] | str, timestamp: int) -> str:
    """The header Stripe sends: one ``v1`` per active secret (several while a
    secret is being rotated)."""
    keys = [secrets] if isinstance(secrets, str) else list(secrets)
    parts = [f"t={timestamp}"]
    parts += [f"{SIGNATURE_SCHEME}={compute_signature(payload, k, timestamp)}" for k in keys]
    return ",".join(parts)


def parse_signature_header(header: str | None) -> ParsedSignature:
    if not header:
        raise SignatureError(f"missing {SIGNATURE_HEADER} header")
    timestamp: int | None = None
    found: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            raise SignatureError(f"malformed {SIGNATURE_HEADER} header")
        if key == "t":
            # isascii(): str.isdigit() also accepts "²", which int() refuses.
            if not (value.isascii() and value.isdigit()) or len(value) > 12:
                raise SignatureError("signature timestamp is not a unix time")
            timestamp = int(value)
        elif key == SIGNATURE_SCHEME:
            found.append(value)
        # Other schemes (v0 in test mode) are ignored, as Stripe's libraries do.
    if timestamp is None:
        raise SignatureError("signature header has no timestamp")
    if not found:
        raise SignatureError(f"signature header has no {SIGNATURE_SCHEME} signature")
    return ParsedSignature(timestamp, tuple(found))


def verify_signature(
    payload: bytes,
    header: str | None,
    secrets: Iterable[str],
    now: int,
    tolerance: int = TOLERANCE_SECONDS,
) -> int:
    """Return the signed timestamp, or raise :class:`SignatureError`.

    Accepts when any ``v1`` matches any of our secrets (rotation works from
    either side) and ``|now - t| <= tolerance``: too old is a replay, too far
    ahead is a forged or badly skewed timestamp.
    """
    parsed = parse_signature_header(header)
    expected = [compute_signature(payload, secret, parsed.timestamp) for secret in secrets]
    if not expected:
        raise SignatureError("no webhook secret configured")
    # Compare every pair in constant time; no early exit on a match.
    matched = False
    for candidate in parsed.signatures:
        # Bytes: compare_digest refuses str with non-ASCII characters (a 500, not a 400).
        presented = candidate.encode("utf-8", "replace")
        for wanted in expected:
            matched |= hmac.compare_digest(presented, wanted.encode())
    if not matched:
        raise SignatureError("no signature matches the endpoint secret")
    if parsed.timestamp < now - tolerance:
        raise SignatureError(f"signature timestamp is more than {tolerance} s old")
    if parsed.timestamp > now + tolerance:
        raise SignatureError(f"signature timestamp is more than {tolerance} s in the future")
    return parsed.timestamp
