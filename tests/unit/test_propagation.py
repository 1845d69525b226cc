"""``Target.until_shown``: how a check waits out a deployment's propagation bound.

On an injected clock: asking costs 1 ms, sleeping moves the clock, nothing really waits."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from fixtures.stripe.lifecycle import ExpectedLicense
from loadtests.harness.checks.target import PROPAGATION_POLL_SECONDS, Answer, Target
from loadtests.harness.checks.webhook_idempotency import final_state_mismatches

OLD = Answer(200, {}, httpx.Headers())
NEW = Answer(403, {"error": {"code": "SUBSCRIPTION_INACTIVE"}}, httpx.Headers())
BROKEN = Answer(500, {}, httpx.Headers())


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.slept += seconds
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def target(clock: Clock) -> Iterator[Target]:
    t = Target("http://127.0.0.1:9", [], monotonic=clock.monotonic, sleep=clock.sleep)
    yield t
    t.close()


def shows_after(
    clock: Clock, target: Target, lag: float | None, wrong: Answer = OLD
) -> tuple[Callable[[], Answer], list[float]]:
    """An answer that shows the change ``lag`` s after it was acknowledged (None: never)."""
    asks: list[float] = []

    def ask() -> Answer:
        clock.now += 0.001  # a request's round trip
        asks.append(clock.now)
        late = lag is None or clock.now - target.acknowledged < lag
        return wrong if late else NEW

    return ask, asks


def test_bound_0_judges_the_very_next_answer(clock: Clock, target: Target) -> None:
    target.acknowledge()
    ask, asks = shows_after(clock, target, 0.010)
    seen = target.until_shown(ask, lambda a: a is NEW, lambda a: a is OLD)
    assert not seen.shown and seen.answer is OLD and len(asks) == 1 and clock.slept == 0
    assert seen.note() == "" and seen.late() == ""  # today's wording, unchanged


def test_within_the_bound_a_late_change_is_seen_and_timed(clock: Clock, target: Target) -> None:
    target.propagation_seconds = 0.100
    target.acknowledge()
    ask, _ = shows_after(clock, target, 0.037)
    seen = target.until_shown(ask, lambda a: a is NEW, lambda a: a is OLD)
    assert seen.shown and seen.answer is NEW
    assert 0.037 <= seen.after_s < 0.037 + PROPAGATION_POLL_SECONDS + 0.002
    assert seen.note() == f" (seen after {seen.after_s * 1000:.0f} ms, bound 100 ms)"
    assert clock.slept < 0.100


@pytest.mark.parametrize("lag", [None, 0.150], ids=["never", "after-the-bound"])
def test_a_change_not_seen_within_the_bound_fails_naming_it(
    clock: Clock, target: Target, lag: float | None
) -> None:
    target.propagation_seconds = 0.100
    target.acknowledge()
    start = clock.now
    ask, asks = shows_after(clock, target, lag)
    seen = target.until_shown(ask, lambda a: a is NEW, lambda a: a is OLD)
    assert not seen.shown and seen.answer is OLD
    assert clock.slept <= 0.100 + 1e-9  # never sleeps past the bound
    assert asks[-1] - start >= 0.100  # the last ask after the bound had passed
    assert asks[-2] - start < 0.100  # ... and only one
    assert "propagation bound 100 ms" in seen.late()
    assert seen.late().startswith(f"; still so {seen.after_s * 1000:.0f} ms after the change")


def test_an_answer_propagation_cannot_explain_fails_at_once(clock: Clock, target: Target) -> None:
    target.propagation_seconds = 0.100
    target.acknowledge()
    ask, asks = shows_after(clock, target, None, wrong=BROKEN)
    seen = target.until_shown(ask, lambda a: a is NEW, lambda a: a is OLD)
    assert not seen.shown and seen.answer is BROKEN and len(asks) == 1 and clock.slept == 0


def test_the_asks_are_bounded_even_on_a_clock_that_never_moves() -> None:
    stalled = Target(
        "http://127.0.0.1:9",
        [],
        propagation_seconds=0.050,
        monotonic=lambda: 5.0,
        sleep=lambda s: None,
    )
    asks: list[int] = []

    def ask() -> Answer:
        asks.append(1)
        return OLD

    seen = stalled.until_shown(ask, lambda a: a is NEW, lambda a: a is OLD)
    stalled.close()
    assert not seen.shown and len(asks) == 2 + int(0.050 / PROPAGATION_POLL_SECONDS)


# ------------------------------------------ webhook_idempotency's final states


def expected(email: str, status: str) -> ExpectedLicense:
    return ExpectedLicense(email, "cus_1", "cs_1", status, 0, 0, (), ("checkout",))


ACTIVE = Answer(200, {}, httpx.Headers())
ENDED = Answer(404, {"error": {"code": "NO_VALID_SUBSCRIPTION"}}, httpx.Headers())


def final_states_shown_after(
    mp: pytest.MonkeyPatch,
    clock: Clock,
    target: Target,
    lag: float | None,
    old: Answer,
    new: Answer,
) -> None:
    def instant(email: str, session_id: str, fingerprint: str) -> Answer:
        clock.now += 0.001
        late = lag is None or clock.now - target.acknowledged < lag
        return old if late else new

    mp.setattr(target, "instant", instant)


@pytest.mark.parametrize(
    ("status", "old", "new"), [("active", ENDED, ACTIVE), ("cancelled", ACTIVE, ENDED)]
)
def test_final_states_are_judged_within_the_bound(
    monkeypatch: pytest.MonkeyPatch,
    clock: Clock,
    target: Target,
    status: str,
    old: Answer,
    new: Answer,
) -> None:
    oracle = {"a@x": expected("a@x", status)}
    target.acknowledge()  # the storm's end
    final_states_shown_after(monkeypatch, clock, target, 0.020, old, new)
    assert len(final_state_mismatches(target, oracle)) == 1  # bound 0: exact, as before
    target.propagation_seconds = 0.100
    target.acknowledge()
    assert final_state_mismatches(target, oracle) == []
    target.acknowledge()
    final_states_shown_after(monkeypatch, clock, target, None, old, new)
    [wrong] = final_state_mismatches(target, oracle)
    assert "propagation bound 100 ms" in wrong
