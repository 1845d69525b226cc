"""``cache_tiers``: the cache hint at every tier boundary, in the body and in ``Cache-Control``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from licensing_service.contract import ErrorCode
from loadtests.harness.checks.invoices import expect_delivered, invoice_event, new_ids
from loadtests.harness.checks.target import Answer, CheckFailed, Seen, Target, require_elapsed
from loadtests.harness.provision import Credential, plan_licenses


@dataclass(frozen=True, slots=True)
class Tier:
    strategy: str
    seconds: int


# The README's tiers ("How it behaves"), restated: the checks judge the
# service, so they must not borrow its code.
AGGRESSIVE = Tier("aggressive", 3600)
MODERATE = Tier("moderate", 1800)
CONSERVATIVE = Tier("conservative", 900)
MINIMAL = Tier("minimal", 300)
ACTIVE_TIERS = (AGGRESSIVE, MODERATE, CONSERVATIVE)
# (seconds since the previous validation, the tier the next one must get):
# each side of both boundaries.
BOUNDARIES: tuple[tuple[int, Tier], ...] = (
    (3599, AGGRESSIVE),
    (3600, MODERATE),
    (86399, MODERATE),
    (86400, CONSERVATIVE),
)


def cache_control(answer: Answer) -> frozenset[str]:
    """Directives of ``Cache-Control``, order and spacing ignored."""
    raw = answer.headers.get("cache-control") or ""
    return frozenset(part.strip().lower() for part in raw.split(",") if part.strip())


def hinted(tier: Tier) -> frozenset[str]:
    return frozenset({"private", f"max-age={tier.seconds}"})


def check_cache_tiers(target: Target) -> str:
    target.require(clock=True, secret=True)
    steps: list[str] = []
    cred, latest = _fresh_license_at_aggressive(target, steps)
    for delta, tier in BOUNDARIES:
        target.settle()
        target.advance(delta)
        answer = target.validate(cred)
        require_elapsed(latest, answer, delta)
        expect_tier(answer, tier, f"a validation {delta} s after the previous one")
        steps.append(f"{delta} s later → {tier.seconds}")
        latest = answer
    ids = new_ids()
    created = int(target.sign_clock()()) + 1  # newer than the checkout, days ago by now
    failed = invoice_event(cred, paid=False, invoice_id=ids.new("in"), created=created, ids=ids)
    expect_delivered(target.send_event(failed), "invoice.payment_failed")
    seen = until_suspended(target, cred)
    expect_inactive_hint(seen)
    steps.append(f"inactive → 403 with 300{seen.note()}")
    return f"{', '.join(steps)}; each in caching.duration and Cache-Control"


def _fresh_license_at_aggressive(target: Target, steps: list[str]) -> tuple[Credential, Answer]:
    """A license validated for the first time, then again at once (→ 3600).

    Its token comes from the welcome email when the outbox shows it: the
    instant validation that otherwise hands it out is itself a validation,
    after which no validation is ever a "first" one."""
    lic = plan_licenses(1, seed=target.seed(), prefix=target.prefix("cache-tiers"))[0]
    provisioner = target.provisioner()
    provisioner.checkout(lic)
    token = welcome_token(target.outbox([lic.email]) or [], lic.email)
    if token is None:
        steps.append(
            "first validation not tested (no welcome email with the token in the outbox;"
            " the token came from an instant validation)"
        )
        cred = lic.with_token(provisioner.instant(lic))
    else:
        cred = lic.with_token(token)
        first = target.validate(cred)
        expect_tier(first, CONSERVATIVE, "the first validation of a new license")
        steps.append(f"first validation → {CONSERVATIVE.seconds}")
    target.settle()
    again = target.validate(cred)
    expect_tier(again, AGGRESSIVE, "a validation right after another")
    steps.append(f"again at once → {AGGRESSIVE.seconds}")
    return cred, again


def welcome_token(outbox: list[dict[str, Any]], email: str) -> str | None:
    for row in outbox:
        payload = row.get("payload")
        if row.get("recipient") == email and isinstance(payload, dict):
            token = payload.get("unlock_token")
            if row.get("email_type") == "welcome" and isinstance(token, str):
                return token
    return None


def expect_tier(answer: Answer, tier: Tier, what: str) -> None:
    if not answer.is_(200):
        raise CheckFailed(
            f"{what} answered {answer.describe()}, expected 200 with the"
            f" {tier.seconds} s {tier.strategy} tier"
        )
    caching = answer.body.get("caching")
    caching = caching if isinstance(caching, dict) else {}
    seen = (caching.get("duration"), caching.get("strategy"))
    header = cache_control(answer)
    if seen != (tier.seconds, tier.strategy) or header != hinted(tier):
        raise CheckFailed(
            f"{what} got caching.duration {seen[0]} ({seen[1]}) and Cache-Control"
            f" {answer.headers.get('cache-control')!r}, expected {tier.seconds} ({tier.strategy})"
            f" and 'private, max-age={tier.seconds}'"
        )


def tier_of(answer: Answer) -> Tier | None:
    """The active tier a 200 holds, body and header agreeing; None otherwise."""
    if not answer.is_(200):
        return None
    caching = answer.body.get("caching")
    caching = caching if isinstance(caching, dict) else {}
    seen = (caching.get("duration"), caching.get("strategy"))
    for tier in ACTIVE_TIERS:
        if seen == (tier.seconds, tier.strategy) and cache_control(answer) == hinted(tier):
            return tier
    return None


def is_suspended(answer: Answer) -> bool:
    return answer.is_(403, ErrorCode.SUBSCRIPTION_INACTIVE)


def until_suspended(target: Target, cred: Credential) -> Seen:
    """The validation after a suspension; within the propagation bound, a 200 with
    a tier by the rules is what a replica not yet told says, and is asked again."""
    return target.until_shown(
        lambda: target.validate(cred), is_suspended, lambda a: tier_of(a) is not None
    )


def expect_inactive_hint(seen: Seen) -> None:
    answer = seen.answer
    if not is_suspended(answer):
        raise CheckFailed(
            f"validation of a license suspended by invoice.payment_failed answered"
            f" {answer.describe()}, expected 403 SUBSCRIPTION_INACTIVE{seen.late()}"
        )
    caching = answer.body.get("caching")
    duration = caching.get("duration") if isinstance(caching, dict) else None
    if duration != MINIMAL.seconds or cache_control(answer) != hinted(MINIMAL):
        raise CheckFailed(
            f"403 SUBSCRIPTION_INACTIVE came with caching.duration {duration} and"
            f" Cache-Control {answer.headers.get('cache-control')!r}, expected 300 and"
            " 'private, max-age=300'"
        )
