"""The gate's judgement: every metric both ways, selections, checks, abort-early, exit codes."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from loadtests.harness.gate_config import LATENCY_METRICS, GateConfig, LoadConfig, Threshold
from loadtests.harness.model import (
    CheckResult,
    EndpointSummary,
    LatencyStats,
    LoadSummary,
    Outcome,
    Verdict,
)
from loadtests.harness.verdicts import (
    EXIT_ERROR,
    EXIT_FAIL,
    EXIT_PASS,
    evaluate,
    exit_code,
    should_abort,
)

# --------------------------------------------------------------------------- builders

FIELDS = {"p50": "p50", "p90": "p90", "p95": "p95", "p99": "p99", "p99.9": "p999"}
FIELDS |= {"max": "max", "mean": "mean"}


def lat(value: float = 5.0, *, count: int = 1000, **fields: float) -> LatencyStats:
    """Every statistic ``value`` unless overridden (p99.9 is the ``p999`` field)."""
    base = dict.fromkeys(("mean", "p50", "p90", "p95", "p99", "p999", "max"), value)
    base |= fields
    return LatencyStats(count=count, **base)


def only(metric: str, value: float, others: float) -> LatencyStats:
    """``metric`` at ``value``, every other statistic at ``others``: proves which one is read."""
    values = dict.fromkeys(("mean", "p50", "p90", "p95", "p99", "p999", "max"), others)
    values[FIELDS[metric]] = value
    return LatencyStats(count=1000, **values)


def ep(
    name: str,
    *,
    tags: tuple[str, ...] = (),
    ok: LatencyStats | None = None,
    corrected: LatencyStats | None = None,
    requests: int = 1000,
    failures: int = 0,
    rps: float = 200.0,
) -> EndpointSummary:
    ok = lat() if ok is None and requests > failures else ok
    return EndpointSummary(name, tags, ok, None, corrected, requests, failures, rps)


def run(*endpoints: EndpointSummary, aborted: str | None = None) -> LoadSummary:
    return LoadSummary(60.0, {e.name: e for e in endpoints}, aborted=aborted)


def gate(*thresholds: Threshold, checks: dict[str, bool] | None = None, **load: Any) -> GateConfig:
    return GateConfig(LoadConfig(**load), thresholds, {} if checks is None else checks)


def judge(t: Threshold, summary: LoadSummary | None) -> Verdict:
    (verdict,) = evaluate(gate(t), summary, [])
    return verdict


# --------------------------------------------------------------------------- thresholds


@pytest.mark.parametrize("metric", LATENCY_METRICS)
def test_each_latency_metric_reads_its_own_statistic(metric: str) -> None:
    t = Threshold("validate", metric, max=10.0)
    passing = judge(t, run(ep("validate", ok=only(metric, 8.0, others=1000.0))))
    failing = judge(t, run(ep("validate", ok=only(metric, 12.0, others=1.0))))
    assert passing.outcome is Outcome.PASS and passing.observed == "8.00 ms"
    assert failing.outcome is Outcome.FAIL and failing.observed == "12.0 ms"
    assert passing.name == f"validate {metric} <= 10 ms" and passing.expected == "<= 10 ms"


@pytest.mark.parametrize("metric", LATENCY_METRICS)
def test_each_corrected_metric_reads_the_corrected_statistics(metric: str) -> None:
    t = Threshold("validate", f"corrected_{metric}", max=10.0)
    good, bad = only(metric, 8.0, others=1000.0), only(metric, 12.0, others=1.0)
    # ok stats are the opposite, so reading the wrong ones flips the verdict.
    assert judge(t, run(ep("validate", ok=bad, corrected=good))).outcome is Outcome.PASS
    assert judge(t, run(ep("validate", ok=good, corrected=bad))).outcome is Outcome.FAIL


def test_corrected_latency_missing_fails_and_says_why() -> None:
    verdict = judge(Threshold("validate", "corrected_p99", max=10.0), run(ep("validate")))
    assert verdict.outcome is Outcome.FAIL
    assert "only paced users" in verdict.detail


def test_latency_min_and_range_bounds() -> None:
    summary = run(ep("validate", ok=lat(5.0)))
    assert judge(Threshold("validate", "p50", min=1.0), summary).outcome is Outcome.PASS
    assert judge(Threshold("validate", "p50", min=6.0), summary).outcome is Outcome.FAIL
    in_range = judge(Threshold("validate", "p50", min=1.0, max=10.0), summary)
    assert in_range.outcome is Outcome.PASS and in_range.expected == "1..10 ms"
    assert judge(Threshold("validate", "p50", min=6.0, max=10.0), summary).outcome is Outcome.FAIL


def test_error_rate_passes_and_fails() -> None:
    zero = Threshold("validate", "error_rate", max=0.0)
    clean = judge(zero, run(ep("validate", failures=0)))
    assert clean.outcome is Outcome.PASS and clean.observed == "0 (0/1000)"
    one = judge(zero, run(ep("validate", failures=1)))
    assert one.outcome is Outcome.FAIL and one.observed == "0.001 (1/1000)"
    tolerant = Threshold("validate", "error_rate", max=0.01)
    assert judge(tolerant, run(ep("validate", failures=5))).outcome is Outcome.PASS
    assert judge(tolerant, run(ep("validate", failures=11))).outcome is Outcome.FAIL


def test_rps_passes_and_fails() -> None:
    floor = Threshold("validate", "rps", min=100.0)
    ok = judge(floor, run(ep("validate", rps=150.0)))
    assert ok.outcome is Outcome.PASS and ok.observed == "150/s" and ok.expected == ">= 100/s"
    assert judge(floor, run(ep("validate", rps=50.0))).outcome is Outcome.FAIL
    ceiling = Threshold("validate", "rps", max=100.0)
    assert judge(ceiling, run(ep("validate", rps=50.0))).outcome is Outcome.PASS
    assert judge(ceiling, run(ep("validate", rps=150.0))).outcome is Outcome.FAIL


@pytest.mark.parametrize("metric", [*LATENCY_METRICS, "error_rate", "rps", "corrected_p99"])
def test_no_matching_requests_fails(metric: str) -> None:
    t = Threshold("validte", metric, max=10.0)
    verdict = judge(t, run(ep("validate"), ep("webhook")))
    assert verdict.outcome is Outcome.FAIL and verdict.observed == "no data"
    # Naming what was seen turns a typo into a one-glance fix.
    assert "no requests matched" in verdict.detail and "validate, webhook" in verdict.detail


def test_an_endpoint_with_zero_requests_is_no_data() -> None:
    verdict = judge(Threshold("validate", "rps", min=0.0), run(ep("validate", requests=0)))
    assert verdict.outcome is Outcome.FAIL and "no requests matched" in verdict.detail


def test_latency_with_only_failures_fails() -> None:
    summary = run(ep("validate", ok=None, requests=10, failures=10))
    verdict = judge(Threshold("validate", "p99", max=10.0), summary)
    assert verdict.outcome is Outcome.FAIL and "no successful requests" in verdict.detail


def tagged() -> LoadSummary:
    return run(
        ep("validate", tags=("licensing",), ok=lat(4.0), requests=1000, failures=0, rps=100.0),
        ep(
            "heartbeat",
            tags=("licensing", "sessions"),
            ok=lat(9.0),
            requests=500,
            failures=5,
            rps=50.0,
        ),
        ep("webhook", tags=("stripe",), ok=lat(80.0), requests=100, failures=10, rps=10.0),
    )


def test_tag_selection_sums_error_rate_and_rps_over_the_tagged_endpoints() -> None:
    summary = tagged()
    errors = judge(Threshold("tag:licensing", "error_rate", max=0.01), summary)
    assert errors.outcome is Outcome.PASS and errors.observed == "0.003333 (5/1500)"
    rps = judge(Threshold("tag:licensing", "rps", min=150.0), summary)
    assert rps.outcome is Outcome.PASS and rps.observed == "150/s"
    assert judge(Threshold("tag:licensing", "rps", min=151.0), summary).outcome is Outcome.FAIL
    assert judge(Threshold("tag:nothing", "rps", min=0.0), summary).outcome is Outcome.FAIL


def test_tag_selection_judges_latency_by_the_worst_endpoint_and_says_so() -> None:
    summary = tagged()
    passing = judge(Threshold("tag:licensing", "p99", max=10.0), summary)
    assert passing.outcome is Outcome.PASS and passing.observed == "9.00 ms"
    assert "worst of 2 endpoints: heartbeat" in passing.detail
    failing = judge(Threshold("tag:licensing", "p99", max=5.0), summary)
    assert failing.outcome is Outcome.FAIL and "heartbeat" in failing.detail
    # A min bound's worst endpoint is the lowest one.
    low = judge(Threshold("tag:licensing", "p50", min=5.0), summary)
    assert low.outcome is Outcome.FAIL and "worst of 2 endpoints: validate" in low.detail
    both = judge(Threshold("tag:licensing", "p50", min=1.0, max=10.0), summary)
    assert both.outcome is Outcome.PASS and both.observed == "4.00 ms..9.00 ms"


def test_star_selects_every_endpoint() -> None:
    summary = tagged()
    errors = judge(Threshold("*", "error_rate", max=0.0), summary)
    assert errors.outcome is Outcome.FAIL and errors.observed == "0.009375 (15/1600)"
    latency = judge(Threshold("*", "p99", max=100.0), summary)
    assert latency.outcome is Outcome.PASS and "worst of 3 endpoints: webhook" in latency.detail


def test_no_summary_makes_thresholds_errors_but_still_judges_checks() -> None:
    config = gate(Threshold("validate", "p99", max=10.0), checks={"no_grace": True})
    checks = [CheckResult("no_grace", Outcome.PASS, "revoked at once")]
    threshold, check = evaluate(config, None, checks)
    assert threshold.outcome is Outcome.ERROR and "did not produce" in threshold.detail
    assert check.outcome is Outcome.PASS


def test_a_stopped_run_proves_only_broken_max_bounds() -> None:
    summary = run(ep("validate", ok=lat(20.0), rps=10.0), aborted="validate p99 <= 10 ms")
    broken = judge(Threshold("validate", "p99", max=10.0), summary)
    assert broken.outcome is Outcome.FAIL and "run stopped early" in broken.detail
    passing = judge(Threshold("validate", "p99", max=50.0), summary)
    assert passing.outcome is Outcome.ERROR and "not judged" in passing.detail
    too_slow = judge(Threshold("validate", "rps", min=100.0), summary)
    assert too_slow.outcome is Outcome.ERROR
    nothing = judge(Threshold("webhook", "p99", max=100.0), summary)
    assert nothing.outcome is Outcome.ERROR


# --------------------------------------------------------------------------- checks


def test_check_outcomes_carry_over_with_their_detail() -> None:
    config = gate(checks={"cache_tiers": True, "no_grace": True, "heartbeat_expiry": True})
    results = [
        CheckResult("cache_tiers", Outcome.PASS, "tiers as configured"),
        CheckResult("no_grace", Outcome.FAIL, "revoked license still valid after 2 s"),
        CheckResult("heartbeat_expiry", Outcome.SKIP, "no test clock on --target"),
    ]
    verdicts = {v.name: v for v in evaluate(config, run(ep("validate")), results)}
    assert verdicts["cache_tiers"].outcome is Outcome.PASS
    assert verdicts["no_grace"].outcome is Outcome.FAIL
    assert verdicts["no_grace"].detail == "revoked license still valid after 2 s"
    assert verdicts["heartbeat_expiry"].outcome is Outcome.SKIP
    assert verdicts["heartbeat_expiry"].detail == "no test clock on --target"
    assert all(v.kind == "check" for v in verdicts.values())


def test_an_enabled_check_without_a_result_is_an_error() -> None:
    (verdict,) = evaluate(gate(checks={"conflict_takeover": True}), None, [])
    assert verdict.outcome is Outcome.ERROR and "no result" in verdict.detail


def test_disabled_checks_are_not_judged_even_with_a_result() -> None:
    config = gate(checks={"conflict_takeover": False})
    results = [CheckResult("conflict_takeover", Outcome.FAIL, "boom")]
    assert evaluate(config, None, results) == []


def test_unknown_or_duplicated_check_results_are_errors() -> None:
    config = gate(checks={"no_grace": True})
    results = [
        CheckResult("no_grace", Outcome.PASS, "a"),
        CheckResult("no_grace", Outcome.PASS, "b"),
        CheckResult("mystery", Outcome.PASS, "c"),
    ]
    verdicts = {v.name: v.outcome for v in evaluate(config, None, results)}
    assert verdicts == {"no_grace": Outcome.ERROR, "mystery": Outcome.ERROR}


# --------------------------------------------------------------------------- exit codes


def v(outcome: Outcome) -> Verdict:
    return Verdict("check", outcome.value, outcome, "pass", outcome.value)


@pytest.mark.parametrize(
    ("outcomes", "code"),
    [
        ([Outcome.PASS], EXIT_PASS),
        ([Outcome.PASS, Outcome.SKIP], EXIT_PASS),
        ([Outcome.SKIP], EXIT_PASS),
        ([Outcome.PASS, Outcome.FAIL], EXIT_FAIL),
        ([Outcome.PASS, Outcome.ERROR], EXIT_ERROR),
        # A proven failure outranks an unknown: re-running won't make it go away.
        ([Outcome.ERROR, Outcome.FAIL, Outcome.PASS], EXIT_FAIL),
        ([], EXIT_ERROR),
    ],
)
def test_exit_codes(outcomes: list[Outcome], code: int) -> None:
    assert exit_code([v(o) for o in outcomes]) == code
    assert (EXIT_PASS, EXIT_FAIL, EXIT_ERROR) == (0, 1, 2)


# --------------------------------------------------------------------------- abort early


def abortable(*thresholds: Threshold) -> GateConfig:
    return gate(*thresholds, abort_early=True, warmup_s=10, duration_s=60)


def test_no_abort_before_the_warmup_or_when_switched_off() -> None:
    slow = run(ep("validate", ok=lat(50.0)))
    config = abortable(Threshold("validate", "p99", max=10.0))
    assert should_abort(config, slow, elapsed_s=9.9) is None
    off = replace(config, load=replace(config.load, abort_early=False))
    assert should_abort(off, slow, elapsed_s=30.0) is None


def test_abort_after_the_warmup_on_a_broken_max_bound() -> None:
    config = abortable(Threshold("validate", "p99", max=10.0))
    reason = should_abort(config, run(ep("validate", ok=lat(50.0))), elapsed_s=12.0)
    assert reason == "validate p99 <= 10 ms: observed 50.0 ms after 12s"
    assert should_abort(config, run(ep("validate", ok=lat(5.0))), elapsed_s=12.0) is None


def test_abort_on_errors() -> None:
    config = abortable(Threshold("*", "error_rate", max=0.0))
    reason = should_abort(config, run(ep("validate", failures=3)), elapsed_s=10.0)
    assert reason is not None and reason.startswith("* error_rate <= 0: observed 0.003")


def test_min_bounds_rps_and_missing_data_never_abort() -> None:
    config = abortable(
        Threshold("validate", "rps", min=1000.0),
        Threshold("validate", "rps", max=1.0),
        Threshold("validate", "p50", min=100.0),
        Threshold("webhook", "p99", max=10.0),
    )
    assert should_abort(config, run(ep("validate", rps=5.0)), elapsed_s=30.0) is None


def test_cpu_steal_makes_a_failed_latency_threshold_inconclusive_not_a_pass() -> None:
    from loadtests.harness.gate_config import loads_config
    from loadtests.harness.model import EndpointSummary, LatencyStats, LoadSummary, Outcome
    from loadtests.harness.verdicts import evaluate, exit_code

    config = loads_config(
        '[load]\nmax_steal = 5\n[[threshold]]\nselect = "validate"\nmetric = "p99"\nmax = 10\n'
        '[[threshold]]\nselect = "validate"\nmetric = "error_rate"\nmax = 0\n'
        "[checks]\ncache_tiers = false\nheartbeat_expiry = false\nconflict_takeover = false\n"
        "no_grace = false\nwebhook_idempotency = false\n"
    )

    def summary(p99: float, failures: int) -> LoadSummary:
        stats = LatencyStats(100, 2.0, 1.0, 2.0, 3.0, p99, p99, p99)
        endpoint = EndpointSummary(
            "validate", (), stats, None, None, 100 + failures, failures, 10.0
        )
        return LoadSummary(10.0, {"validate": endpoint})

    slow = evaluate(config, summary(50.0, 0), [], steal_pct=30.0)
    assert [v.outcome for v in slow] == [Outcome.ERROR, Outcome.PASS]
    assert "steal" in slow[0].detail and exit_code(slow) == 2
    # Without steal the same run fails; under steal a real error rate still fails.
    assert evaluate(config, summary(50.0, 0), [], steal_pct=1.0)[0].outcome is Outcome.FAIL
    broken = evaluate(config, summary(50.0, 3), [], steal_pct=30.0)
    assert broken[1].outcome is Outcome.FAIL and exit_code(broken) == 1
    # A pass under steal stays a pass.
    assert evaluate(config, summary(5.0, 0), [], steal_pct=30.0)[0].outcome is Outcome.PASS
