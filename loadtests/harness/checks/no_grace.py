"""``no_grace``: a failed payment suspends at once, a paid invoice restores at once."""

from __future__ import annotations

from loadtests.harness.checks.cache_tiers import is_suspended, until_suspended
from loadtests.harness.checks.invoices import expect_delivered, invoice_event, new_ids
from loadtests.harness.checks.target import Answer, CheckFailed, Target, expect


def check_no_grace(target: Target) -> str:
    target.require(secret=True)
    cred = target.licenses("no-grace", 1)[0]
    expect(target.validate(cred), 200, None, "the first validation of a new license")
    target.settle()
    second = target.validate(cred)
    expect(second, 200, None, "the second validation of a new license")
    held = _tier_text(second)
    ids = new_ids()
    invoice_id = ids.new("in")
    # Later than the checkout (signed a moment ago), so it is the newest fact.
    failed_at = int(target.sign_clock()()) + 1
    failed = invoice_event(cred, paid=False, invoice_id=invoice_id, created=failed_at, ids=ids)
    expect_delivered(target.send_event(failed), "invoice.payment_failed")
    seen = until_suspended(target, cred)
    suspended = seen.answer
    if not seen.shown:
        raise CheckFailed(
            f"the validation right after a signed invoice.payment_failed answered"
            f" {suspended.describe()} (with {_tier_text(suspended)}), expected 403"
            f" SUBSCRIPTION_INACTIVE (no grace, though the device held {held}){seen.late()}"
        )
    paid = invoice_event(cred, paid=True, invoice_id=invoice_id, created=failed_at + 60, ids=ids)
    expect_delivered(target.send_event(paid), "invoice.paid")
    back = target.until_shown(lambda: target.validate(cred), lambda a: a.is_(200), is_suspended)
    if not back.shown:
        raise CheckFailed(
            f"the validation right after a signed invoice.paid (attempt 2) answered"
            f" {back.answer.describe()}, expected 200 (recovery is as immediate as"
            f" suspension){back.late()}"
        )
    return (
        f"validated twice (the device held {held}); invoice.payment_failed → next validation 403"
        f" SUBSCRIPTION_INACTIVE{seen.note()}; invoice.paid → next validation 200{back.note()}"
    )


def _tier_text(answer: Answer) -> str:
    caching = answer.body.get("caching")
    if not isinstance(caching, dict):
        return "no cache tier"
    return f"a {caching.get('duration')} s {caching.get('strategy')} tier"
