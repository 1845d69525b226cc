import re
from datetime import UTC, datetime, timedelta

from licensing_service.domain.credentials import (
    TOKEN_ALPHABET,
    hash_fingerprint,
    new_unlock_token,
    normalize_email,
    tokens_match,
)
from licensing_service.domain.rate_limit import FailureLimiter
from licensing_service.domain.subscription import standing

T0 = datetime(2026, 5, 1, tzinfo=UTC)


def test_blocks_after_limit_within_window_and_reports_retry_after() -> None:
    limiter = FailureLimiter(limit=3, window=timedelta(minutes=10))
    for minute in range(3):
        assert limiter.retry_after("k", T0 + timedelta(minutes=minute)) is None
        limiter.record_failure("k", T0 + timedelta(minutes=minute))
    # Unblocks when the oldest of the last 3 failures leaves the window.
    assert limiter.retry_after("k", T0 + timedelta(minutes=3)) == 7 * 60
    assert limiter.retry_after("k", T0 + timedelta(minutes=10)) is None
    assert limiter.retry_after("other", T0) is None


def test_tracked_keys_are_bounded() -> None:
    limiter = FailureLimiter(limit=1, window=timedelta(minutes=10), max_keys=2)
    for key in ("a", "b", "c"):
        limiter.record_failure(key, T0)
    assert limiter.retry_after("a", T0) is None  # evicted
    assert limiter.retry_after("c", T0) is not None


def test_unlock_token_shape_and_uniqueness() -> None:
    tokens = {new_unlock_token() for _ in range(2000)}
    assert len(tokens) == 2000
    pattern = re.compile(rf"^POSPAL(-[{TOKEN_ALPHABET}]{{4}}){{4}}$")
    assert all(pattern.match(t) for t in tokens)
    bodies = "".join(t.removeprefix("POSPAL-") for t in tokens)
    assert not set("IO01") & set(bodies)


def test_each_random_byte_picks_a_letter_by_its_low_five_bits() -> None:
    assert new_unlock_token(lambda n: bytes(range(n))) == "POSPAL-ABCD-EFGH-JKLM-NPQR"
    # The high bits are ignored, so each of the 32 letters is equally likely.
    assert new_unlock_token(lambda n: bytes(range(32 * 7, 32 * 7 + n))) == (
        "POSPAL-ABCD-EFGH-JKLM-NPQR"
    )
    assert new_unlock_token(lambda n: bytes([31] * n)).endswith("-9999")


def test_token_comparison_and_fingerprint_hash() -> None:
    assert tokens_match("POSPAL-AAAA", "POSPAL-AAAA")
    assert not tokens_match("POSPAL-AAAA", "POSPAL-AAAB")
    assert hash_fingerprint("abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    assert normalize_email("  Till@Example.COM ") == "till@example.com"


def test_standing() -> None:
    assert standing("active", None, T0).is_active
    assert standing("active", T0 + timedelta(seconds=1), T0).is_active
    expired = standing("active", T0, T0)
    assert not expired.is_active and expired.reported_status == "expired"
    assert standing("inactive", None, T0).reported_status == "inactive"
    assert not standing("cancelled", None, T0).is_active
