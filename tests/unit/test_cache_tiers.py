from datetime import UTC, datetime, timedelta

import pytest

from licensing_service.domain.cache_tiers import (
    AGGRESSIVE,
    CONSERVATIVE,
    MINIMAL,
    MODERATE,
    tier_for,
)

NOW = datetime(2026, 5, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("seconds_ago", "expected"),
    [
        (0, AGGRESSIVE),
        (3599, AGGRESSIVE),
        (3599.999999, AGGRESSIVE),
        (3600, MODERATE),
        (86399, MODERATE),
        (86400, CONSERVATIVE),
        (10 * 86400, CONSERVATIVE),
        (-60, AGGRESSIVE),  # a clock moved back: treat as recent, never crash
    ],
)
def test_tier_boundaries_are_exact(seconds_ago: float, expected: object) -> None:
    last = NOW - timedelta(seconds=seconds_ago)
    assert tier_for(active=True, last_validation=last, now=NOW) is expected


def test_never_validated_is_conservative() -> None:
    assert tier_for(active=True, last_validation=None, now=NOW) is CONSERVATIVE


def test_inactive_is_minimal_whatever_the_history() -> None:
    assert tier_for(active=False, last_validation=NOW, now=NOW) is MINIMAL


def test_tier_durations_and_next_check() -> None:
    assert [t.seconds for t in (AGGRESSIVE, MODERATE, CONSERVATIVE, MINIMAL)] == [
        3600,
        1800,
        900,
        300,
    ]
    for tier in (AGGRESSIVE, MODERATE, CONSERVATIVE, MINIMAL):
        assert tier.next_check(NOW) - NOW == timedelta(seconds=tier.seconds * 0.8)
        assert tier.valid_until(NOW) - NOW == timedelta(seconds=tier.seconds)
