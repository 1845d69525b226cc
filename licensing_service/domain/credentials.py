"""Unlock tokens, token comparison and fingerprint hashing."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable

# No I, O, 0 or 1: tokens are read aloud over the phone and typed by hand.
TOKEN_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # noqa: S105 - an alphabet
TOKEN_PREFIX = "POSPAL"  # noqa: S105 - a prefix


def new_unlock_token(randbelow: Callable[[int], int] = secrets.randbelow) -> str:
    """``POSPAL-XXXX-XXXX-XXXX-XXXX`` from a CSPRNG (80 bits of entropy)."""
    groups = (
        "".join(TOKEN_ALPHABET[randbelow(len(TOKEN_ALPHABET))] for _ in range(4)) for _ in range(4)
    )
    return "-".join((TOKEN_PREFIX, *groups))


def tokens_match(presented: str, stored: str) -> bool:
    """Constant-time comparison, so response timing says nothing about the token."""
    return hmac.compare_digest(presented.encode(), stored.encode())


def hash_fingerprint(raw: str) -> str:
    """Fingerprints are stored and compared only as SHA-256 hex."""
    return hashlib.sha256(raw.encode()).hexdigest()


def normalize_email(email: str) -> str:
    return email.strip().lower()
