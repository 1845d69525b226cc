"""The order-proof merge of billing facts, and who may process a webhook event."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from functools import reduce

import pytest
from hypothesis import given
from hypothesis import strategies as st

from licensing_service.domain.billing import (
    STRIPE_STATUS,
    BillingFact,
    BillingState,
    Version,
    merge,
)
from licensing_service.domain.subscription import SubscriptionStatus
from licensing_service.domain.webhook_claims import DEFAULT_LEASE, Claim, decide_claim

ACTIVE = SubscriptionStatus.ACTIVE
INACTIVE = SubscriptionStatus.INACTIVE
CANCELLED = SubscriptionStatus.CANCELLED
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
BASE = datetime(2026, 1, 1, tzinfo=UTC)


def fold(facts: Iterable[BillingFact], start: BillingState | None = None) -> BillingState:
    return reduce(
        lambda state, fact: merge(state, fact).state, facts, start or BillingState.empty()
    )


# ------------------------------------------------------------ strategies


@st.composite
def fact_lists(draw: st.DrawFn) -> list[BillingFact]:
    # Few distinct seconds, so same-second ties are common; unique event ids,
    # as Stripe's are (one event is one fact).
    size = draw(st.integers(min_value=0, max_value=8))
    ids = draw(
        st.lists(
            st.text("abcdef0123", min_size=1, max_size=4), min_size=size, max_size=size, unique=True
        )
    )
    facts = []
    for event_id in ids:
        facts.append(
            BillingFact(
                event_id=f"evt_{event_id}",
                created=T0 + draw(st.integers(min_value=0, max_value=3)),
                status=draw(st.none() | st.sampled_from(SubscriptionStatus)),
                period_end=draw(
                    st.none()
                    | st.integers(min_value=0, max_value=4).map(
                        lambda days: BASE + timedelta(days=30 + days)
                    )
                ),
                subscription_id=draw(st.none() | st.sampled_from(["sub_a", "sub_b", "sub_c"])),
                payment_failed=draw(st.booleans()),
            )
        )
    return facts


def expected_state(facts: list[BillingFact]) -> BillingState:
    """What the merge must come to, computed directly from the whole set."""
    with_status = [f for f in facts if f.version is not None]
    winner = max(with_status, key=lambda f: f.version or Version(0, 0, "")) if with_status else None
    naming = [f for f in with_status if f.subscription_id is not None]
    sub = max(naming, key=lambda f: f.version or Version(0, 0, "")) if naming else None
    ends = [f.period_end for f in facts if f.period_end is not None]
    return BillingState(
        status=winner.status if winner else None,
        version=winner.version if winner else None,
        period_end=max(ends) if ends else None,
        subscription_id=sub.subscription_id if sub else None,
        subscription_version=sub.version if sub else None,
        payment_failures=sum(f.payment_failed for f in facts),
    )


# ------------------------------------------------------------ properties


@given(st.data())
def test_every_delivery_order_gives_the_same_state(data: st.DataObject) -> None:
    facts = data.draw(fact_lists())
    in_order = fold(facts)
    shuffled = data.draw(st.permutations(facts))
    assert fold(shuffled) == in_order
    assert fold(reversed(facts)) == in_order
    assert in_order == expected_state(facts)


@given(fact_lists(), st.data())
def test_merging_in_two_batches_is_merging_once(
    facts: list[BillingFact], data: st.DataObject
) -> None:
    # Associativity as the service sees it: a stored state, then the rest.
    cut = data.draw(st.integers(min_value=0, max_value=len(facts)))
    assert fold(facts[cut:], fold(facts[:cut])) == fold(facts)


@given(fact_lists(), st.data())
def test_a_fact_merged_twice_changes_nothing_but_the_failure_count(
    facts: list[BillingFact], data: st.DataObject
) -> None:
    # merge() counts one failure per call: it cannot tell a redelivery from a
    # second failed attempt. Exactly-once is the webhook claim's job (the
    # webhook_events row makes a redelivered event a DUPLICATE that never
    # reaches merge), so a fact merged twice counts its failure twice, and
    # everything else stays put.
    if not facts:
        return
    fact = data.draw(st.sampled_from(facts))
    once = fold(facts)
    twice = merge(once, fact)
    extra = 1 if fact.payment_failed else 0
    assert twice.state == dataclasses.replace(once, payment_failures=once.payment_failures + extra)
    assert not twice.status_changed
    # A repeated fact with a status never counts as newer than itself.
    assert twice.stale == (fact.status is not None)


@given(fact_lists())
def test_a_fact_without_status_never_moves_the_status(facts: list[BillingFact]) -> None:
    state = fold(facts)
    refund = BillingFact("evt_zzzzzz", T0 + 100, None, None, "sub_z")
    merged = merge(state, refund)
    assert merged.state.status == state.status
    assert merged.state.version == state.version
    assert merged.state.subscription_id == state.subscription_id
    assert not merged.stale
    assert not merged.status_changed


# ------------------------------------------------------------ examples


def test_an_old_payment_failure_after_a_newer_payment_is_stale() -> None:
    paid = BillingFact("evt_paid", T0 + 200, ACTIVE, BASE + timedelta(days=60), "sub_a")
    failed = BillingFact("evt_failed", T0 + 100, INACTIVE, None, "sub_a", payment_failed=True)
    after_paid = merge(None, paid)
    assert after_paid.state.status is ACTIVE
    assert not after_paid.stale
    assert after_paid.status_changed

    late = merge(after_paid.state, failed)
    assert late.stale
    assert not late.status_changed
    assert late.state.status is ACTIVE
    assert late.state.version == paid.version
    assert late.state.period_end == BASE + timedelta(days=60)
    # Recorded all the same: the failure happened.
    assert late.state.payment_failures == 1
    # And in delivery order the failure is simply superseded.
    assert fold([failed, paid]) == late.state


@pytest.mark.parametrize("order", ["cancel-first", "active-first"])
def test_a_same_second_tie_leaves_the_more_restrictive_status(order: str) -> None:
    # The ids would order them the other way: rank decides before the id does.
    cancelled = BillingFact("evt_a", T0, CANCELLED, None, "sub_a")
    active = BillingFact("evt_z", T0, ACTIVE, None, "sub_a")
    facts = [cancelled, active] if order == "cancel-first" else [active, cancelled]
    state = fold(facts)
    assert state.status is CANCELLED
    assert state.version == Version(T0, 2, "evt_a")


def test_a_same_second_tie_of_inactive_and_active_is_inactive() -> None:
    failed = BillingFact("evt_a", T0, INACTIVE, payment_failed=True)
    paid = BillingFact("evt_z", T0, ACTIVE)
    assert fold([failed, paid]).status is INACTIVE
    assert fold([paid, failed]).status is INACTIVE


def test_same_second_same_status_is_decided_by_the_event_id() -> None:
    a = BillingFact("evt_a", T0, ACTIVE, None, "sub_a")
    b = BillingFact("evt_b", T0, ACTIVE, None, "sub_b")
    assert fold([a, b]).subscription_id == "sub_b"
    assert fold([b, a]).subscription_id == "sub_b"
    assert merge(fold([b]), a).stale


def test_the_period_end_is_the_latest_reported_whoever_wins() -> None:
    ends = [BASE + timedelta(days=d) for d in (30, 90, 60)]
    facts = [
        BillingFact("evt_1", T0 + 1, ACTIVE, ends[0]),
        BillingFact("evt_2", T0 + 2, INACTIVE, ends[1]),
        BillingFact("evt_3", T0 + 3, CANCELLED, ends[2]),
        BillingFact("evt_4", T0 + 4, None, None),
    ]
    for order in (facts, facts[::-1], [facts[2], facts[0], facts[3], facts[1]]):
        state = fold(order)
        assert state.period_end == BASE + timedelta(days=90)
        assert state.status is CANCELLED


def test_a_status_without_a_subscription_keeps_the_named_one() -> None:
    # customer.deleted claims CANCELLED without naming a subscription.
    created = BillingFact("evt_1", T0, ACTIVE, None, "sub_a")
    deleted = BillingFact("evt_2", T0 + 10, CANCELLED)
    for order in ([created, deleted], [deleted, created]):
        state = fold(order)
        assert state.status is CANCELLED
        assert state.subscription_id == "sub_a"
        assert state.subscription_version == created.version


def test_stripe_statuses_map_without_grace() -> None:
    assert STRIPE_STATUS["active"] is ACTIVE
    assert STRIPE_STATUS["trialing"] is ACTIVE
    for raw in ("past_due", "unpaid", "incomplete", "paused"):
        assert STRIPE_STATUS[raw] is INACTIVE
    for raw in ("canceled", "incomplete_expired"):
        assert STRIPE_STATUS[raw] is CANCELLED


# ------------------------------------------------------------ claims

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=60)


@pytest.mark.parametrize(
    ("status", "lease_until", "received_at", "expected"),
    [
        pytest.param(None, None, None, Claim.NEW, id="never-seen"),
        pytest.param("completed", None, NOW, Claim.DUPLICATE, id="completed"),
        pytest.param(
            "completed", NOW + LEASE, NOW, Claim.DUPLICATE, id="completed-with-stale-lease"
        ),
        pytest.param("failed", None, NOW, Claim.RETRY, id="failed"),
        pytest.param("failed", NOW + LEASE, NOW, Claim.RETRY, id="failed-with-lease"),
        pytest.param("processing", NOW + timedelta(seconds=1), NOW, Claim.IN_FLIGHT, id="live"),
        pytest.param("processing", NOW, NOW - LEASE, Claim.TAKE_OVER, id="lease-ends-now"),
        pytest.param(
            "processing", NOW - timedelta(seconds=1), NOW, Claim.TAKE_OVER, id="lease-expired"
        ),
        # The lease, not the arrival, decides when there is one.
        pytest.param(
            "processing",
            NOW + timedelta(seconds=5),
            NOW - timedelta(days=1),
            Claim.IN_FLIGHT,
            id="old-arrival-live-lease",
        ),
        # Imported rows without a lease hold for one lease from arrival.
        pytest.param(
            "processing",
            None,
            NOW - LEASE + timedelta(seconds=1),
            Claim.IN_FLIGHT,
            id="no-lease-recent-arrival",
        ),
        pytest.param(
            "processing", None, NOW - LEASE, Claim.TAKE_OVER, id="no-lease-arrival-expired"
        ),
        pytest.param(
            "processing", None, NOW - timedelta(days=3), Claim.TAKE_OVER, id="no-lease-old-arrival"
        ),
        pytest.param("processing", None, None, Claim.TAKE_OVER, id="no-lease-no-arrival"),
    ],
)
def test_decide_claim(
    status: str | None,
    lease_until: datetime | None,
    received_at: datetime | None,
    expected: Claim,
) -> None:
    assert decide_claim(status, lease_until, received_at, NOW, LEASE) is expected


def test_a_lease_less_claim_uses_the_given_lease_length() -> None:
    arrived = NOW - timedelta(seconds=90)
    assert decide_claim("processing", None, arrived, NOW, timedelta(seconds=91)) is Claim.IN_FLIGHT
    assert decide_claim("processing", None, arrived, NOW, timedelta(seconds=90)) is Claim.TAKE_OVER


def test_the_default_lease_is_a_minute() -> None:
    assert DEFAULT_LEASE.total_seconds() == 60
    arrived = NOW - timedelta(seconds=59)
    assert decide_claim("processing", None, arrived, NOW) is Claim.IN_FLIGHT
    assert decide_claim("processing", None, NOW - DEFAULT_LEASE, NOW) is Claim.TAKE_OVER
