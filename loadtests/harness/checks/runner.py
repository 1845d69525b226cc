"""The checks by name, run one after the other, each ending in one :class:`CheckResult`."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

from loadtests.harness.checks.cache_tiers import check_cache_tiers
from loadtests.harness.checks.conflict_takeover import check_conflict_takeover
from loadtests.harness.checks.heartbeat_expiry import check_heartbeat_expiry
from loadtests.harness.checks.no_grace import check_no_grace
from loadtests.harness.checks.target import (
    STAMP_SETTLE_SECONDS,
    CheckFailed,
    CheckSkipped,
    Inconclusive,
    Target,
)
from loadtests.harness.checks.webhook_idempotency import check_webhook_idempotency
from loadtests.harness.model import CheckResult, Outcome

CHECKS: dict[str, Callable[[Target], str]] = {
    "cache_tiers": check_cache_tiers,
    "heartbeat_expiry": check_heartbeat_expiry,
    "conflict_takeover": check_conflict_takeover,
    "no_grace": check_no_grace,
    "webhook_idempotency": check_webhook_idempotency,
}


def run_checks(
    base_url: str,
    secrets: Sequence[str],
    enabled: Mapping[str, bool],
    *,
    progress: Callable[[str], None] | None = None,
    settle_seconds: float = STAMP_SETTLE_SECONDS,
    propagation_seconds: float = 0.0,
) -> list[CheckResult]:
    """One result per enabled check, in :data:`CHECKS` order (unknown names
    last, as errors), one after the other. Never raises for a check's sake.
    ``propagation_seconds``: the deployment's bound for a change to show on every
    replica (``[checks].propagation``); 0 judges the very next answer."""
    names = [n for n in CHECKS if enabled.get(n)]
    names += sorted(n for n, on in enabled.items() if on and n not in CHECKS)
    target = Target(
        base_url, secrets, settle_seconds=settle_seconds, propagation_seconds=propagation_seconds
    )
    results = []
    try:
        for name in names:
            if progress is not None:
                progress(f"check {name}: running")
            result = run_one(target, name)
            if progress is not None:
                progress(
                    f"check {name}: {result.outcome.value} ({result.seconds:.1f} s) {result.detail}"
                )
            results.append(result)
    finally:
        target.close()
    return results


def run_one(target: Target, name: str) -> CheckResult:
    started = time.monotonic()
    check = CHECKS.get(name)
    try:
        if check is None:
            raise Inconclusive(f"no such check; known: {', '.join(CHECKS)}")
        target.start_budget()
        outcome, detail = Outcome.PASS, check(target)
    except CheckFailed as exc:
        outcome, detail = Outcome.FAIL, str(exc)
    except CheckSkipped as exc:
        outcome, detail = Outcome.SKIP, str(exc)
    except Inconclusive as exc:
        outcome, detail = Outcome.ERROR, f"inconclusive: {exc}"
    except Exception as exc:  # a check must never take the gate down with it
        outcome, detail = Outcome.ERROR, f"{type(exc).__name__}: {exc}"
    seconds = round(time.monotonic() - started, 3)
    return CheckResult(name, outcome, " ".join(detail.split()), seconds)
