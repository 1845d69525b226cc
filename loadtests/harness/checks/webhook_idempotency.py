"""``webhook_idempotency``: a duplicate-heavy, shuffled storm applies each event once.

The storm is the fake Stripe's simulated stream, its emails made unique to the run
(:func:`retag`), sent paced beside the measured load. Four judges read the result:
every delivery answered 200; each event processed exactly once; every license ends
where the fake Stripe's oracle says; each oracle email queued exactly once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from fixtures.stripe.delivery import DeliveryOptions, plan
from fixtures.stripe.lifecycle import MONTH, ExpectedLicense, simulate
from fixtures.stripe.sender import Attempt, Sender, SenderOptions
from licensing_service.contract import ErrorCode, routes
from loadtests.harness.checks.target import REQUEST_TIMEOUT_SECONDS, CheckFailed, Seen, Target
from loadtests.harness.provision import EMAIL_DOMAIN

# The reference service's /__harness__/emails lists at most this many rows,
# oldest first: on a long-lived service a run's emails may be past the end.
OUTBOX_LIMIT = 10_000
STORM_CUSTOMERS = 40
STORM_RATE = 400.0  # deliveries per second
STORM_MONTHS = 6
STORM_DEADLINE_SECONDS = 60.0
ORACLE_EMAIL_TYPES = frozenset({"welcome", "suspension", "reactivation"})


def check_webhook_idempotency(target: Target) -> str:
    target.require(secret=True)
    seed = target.seed()
    clock = target.sign_clock()
    # Half the simulation behind the service's clock, half ahead: every license
    # the oracle calls active is paid beyond "now", so `instant` must accept it.
    start = datetime.fromtimestamp(int(clock()) - STORM_MONTHS * MONTH // 2, UTC)
    stream = simulate(STORM_CUSTOMERS, STORM_MONTHS, seed, start=start)
    events, oracle = retag(stream.events, stream.oracle, target.run)
    deliveries = plan(events, DeliveryOptions(seed=seed, duplicate_rate=0.5, shuffle="full"))
    options = SenderOptions(
        target.secrets,
        concurrency=8,
        max_attempts=1,  # every genuine delivery must be accepted the first time
        timeout_seconds=REQUEST_TIMEOUT_SECONDS,
        deadline_seconds=max(1.0, min(STORM_DEADLINE_SECONDS, target.remaining())),
        inject_failures=False,
        # Paced: the check runs beside the measured load and must not starve its
        # generator (unpaced, it cost the load's p99 ~150 ms for two seconds).
        rate=STORM_RATE,
    )
    report = Sender(target.base_url + routes.WEBHOOK, options, clock=clock).send(deliveries)
    where = f"(seed {seed}, emails tagged {target.run})"
    if report.timed_out:
        raise CheckFailed(
            f"{len(report.attempts)} of {len(deliveries)} deliveries answered within"
            f" {options.deadline_seconds:g} s, expected all {where}"
        )
    _judge_statuses(report.attempts, len(deliveries), where)
    _judge_applied_once(report.attempts, events, where)
    target.acknowledge()  # the storm's last delivery: propagation is timed from here
    active = _judge_final_states(target, oracle, where)
    mailed = _judge_emails(target, oracle, where)
    duplicates = len(deliveries) - len(events)
    return (
        f"{len(deliveries)} deliveries ({duplicates} duplicates, shuffled) of {len(events)}"
        f" events all 200, each applied exactly once; {len(oracle)} licenses end as the"
        f" oracle says ({active} active); {mailed} {where}"
    )


def retag(
    events: list[dict[str, Any]], oracle: Mapping[str, ExpectedLicense], tag: str
) -> tuple[list[dict[str, Any]], dict[str, ExpectedLicense]]:
    """The stream with every customer email made unique to this run.

    ``simulate`` draws emails from Faker (``user.N@gmail.com``...): the same
    address can come back in another run with another seed, and a checkout
    for a known email re-links that license instead of creating one. The
    domain becomes a reserved one, so no real inbox is ever written to."""
    renamed = {email: f"{email.partition('@')[0]}.{tag}@{EMAIL_DOMAIN}" for email in oracle}
    new_events = [_renamed(event, renamed) for event in events]
    new_oracle = {renamed[e]: replace(exp, email=renamed[e]) for e, exp in oracle.items()}
    return new_events, new_oracle


def _renamed(value: Any, renamed: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return renamed.get(value, value)
    if isinstance(value, dict):
        return {k: _renamed(v, renamed) for k, v in value.items()}
    if isinstance(value, list):
        return [_renamed(v, renamed) for v in value]
    return value


def _judge_statuses(attempts: Sequence[Attempt], total: int, where: str) -> None:
    refused = Counter(f"{a.status} {a.outcome}" for a in attempts if a.status != 200)
    if refused or len(attempts) != total:
        seen = ", ".join(f"{k} x{n}" for k, n in refused.most_common(4))
        raise CheckFailed(
            f"{sum(refused.values())} of {total} genuine deliveries were not answered 200"
            f" ({seen}), expected every one 200 {where}"
        )


def processed_counts(attempts: Sequence[Attempt]) -> Counter[str]:
    """How often each event id was answered as processed: 2xx without
    ``idempotent: true`` (outcome "duplicate", contract.models.WebhookAck)."""
    return Counter(
        a.event_id for a in attempts if 200 <= a.status < 300 and a.outcome != "duplicate"
    )


def applied_problems(
    attempts: Sequence[Attempt], events: Sequence[dict[str, Any]]
) -> tuple[list[tuple[str, int]], list[str]]:
    """``(twice, never)``: events processed more than once, with how often, and
    events never answered as processed (every 2xx said duplicate, or none came)."""
    processed = processed_counts(attempts)
    twice = [(eid, n) for eid, n in processed.items() if n > 1]
    never = [str(e["id"]) for e in events if processed[str(e["id"])] == 0]
    return twice, never


def _judge_applied_once(
    attempts: Sequence[Attempt], events: Sequence[dict[str, Any]], where: str
) -> None:
    types = {str(e["id"]): str(e["type"]) for e in events}
    twice, never = applied_problems(attempts, events)
    if twice:
        eid, n = twice[0]
        raise CheckFailed(
            f"{len(twice)} events were processed more than once (e.g. {eid} {types.get(eid)}:"
            f" {n} answers without idempotent:true), expected exactly one per event id {where}"
        )
    if never:
        raise CheckFailed(
            f"{len(never)} events were answered idempotent:true on every delivery (e.g."
            f" {never[0]} {types[never[0]]}), expected one first processing each {where}"
        )


def final_state_mismatches(
    target: Target, oracle: Mapping[str, ExpectedLicense], fingerprint_prefix: str = "storm"
) -> list[str]:
    """One line per license whose ``instant`` answer is not what the oracle's
    final status implies (active: 200; otherwise 404 NO_VALID_SUBSCRIPTION)."""
    wrong = []
    active, ended = (200, None), (404, ErrorCode.NO_VALID_SUBSCRIPTION)
    for i, exp in enumerate(oracle.values()):
        fingerprint = f"gate-{target.run}-{fingerprint_prefix}-{i}"
        want, other = (active, ended) if exp.status == "active" else (ended, active)
        # Within the propagation bound (from the storm's end), the other state is
        # what a replica not yet told says: asked again, as long as the bound allows.
        seen = _until_state(target, exp, fingerprint, want, other)
        answer = seen.answer
        if not seen.shown:
            wanted = " ".join(str(w) for w in want if w is not None)
            wrong.append(
                f"{exp.email} ({exp.status} after {', '.join(exp.story)}): instant answered"
                f" {answer.describe()}, expected {wanted}{seen.late()}"
            )
    return wrong


def _until_state(
    target: Target,
    exp: ExpectedLicense,
    fingerprint: str,
    want: tuple[int, str | None],
    other: tuple[int, str | None],
) -> Seen:
    return target.until_shown(
        lambda: target.instant(exp.email, exp.checkout_session_id, fingerprint),
        lambda answer: answer.is_(*want),
        lambda answer: answer.is_(*other),
    )


def _judge_final_states(target: Target, oracle: Mapping[str, ExpectedLicense], where: str) -> int:
    wrong = final_state_mismatches(target, oracle)
    if wrong:
        raise CheckFailed(
            f"{len(wrong)} of {len(oracle)} licenses end in another state than the oracle's,"
            f" e.g. {wrong[0]} {where}"
        )
    return sum(1 for exp in oracle.values() if exp.status == "active")


def email_count_mismatches(
    outbox: Sequence[Mapping[str, Any]], oracle: Mapping[str, ExpectedLicense]
) -> tuple[list[tuple[str, str]], Counter[tuple[str, str]], Counter[tuple[str, str]]]:
    """``(diffs, seen, expected)``: the (recipient, email type) pairs of the oracle's
    recipients queued another number of times than the oracle expects."""
    expected = Counter((email, kind) for email, exp in oracle.items() for kind, _ in exp.emails)
    seen = Counter(
        (str(row.get("recipient")), str(row.get("email_type")))
        for row in outbox
        if row.get("recipient") in oracle and row.get("email_type") in ORACLE_EMAIL_TYPES
    )
    diffs = sorted(set((expected - seen) + (seen - expected)))
    return diffs, seen, expected


def _judge_emails(target: Target, oracle: Mapping[str, ExpectedLicense], where: str) -> str:
    outbox = target.outbox(sorted(oracle))
    if outbox is None:
        return (
            f"emails not checked: the target has no {routes.HARNESS_EMAILS} (it needs --test-clock)"
        )
    diffs, seen, expected = email_count_mismatches(outbox, oracle)
    if not diffs:
        return f"{sum(expected.values())} emails each queued exactly once"
    if len(outbox) >= OUTBOX_LIMIT and not seen - expected:
        # Only missing ones, from a listing cut short: they may be past its end.
        return (
            f"emails not fully checked: {routes.HARNESS_EMAILS} lists only the oldest"
            f" {OUTBOX_LIMIT} rows; {sum(seen.values())} of {sum(expected.values())} expected"
            " emails are among them, none more than once"
        )
    recipient, kind = diffs[0]
    raise CheckFailed(
        f"{len(diffs)} (recipient, email) pairs are queued the wrong number of times, e.g."
        f" {kind} to {recipient}: {seen[(recipient, kind)]} in the outbox, expected"
        f" {expected[(recipient, kind)]} {where}"
    )
