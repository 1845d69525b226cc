"""The release gate's judgement: a verdict per threshold and per check, abort-early, exit code.

Pure functions over a :class:`~loadtests.harness.gate_config.GateConfig` and the run's
data (:mod:`loadtests.harness.model`); what the thresholds mean is in ``gate_config``.

Selections: a request name matches that endpoint; ``tag:x`` every endpoint tagged ``x``;
``*`` every endpoint. ``error_rate`` and ``rps`` are summed over the selection. Latency
of several endpoints is judged per endpoint and the worst one reported: separate
percentiles can't be merged, but if every endpoint's p99 is within a max bound then so is
the p99 of all of them together, so judging the worst is sound (and likewise for mean).

Outcomes: a threshold with no data (nothing matched, no successes to time, no corrected
latency recorded) FAILS, because a gate that passes on no data is worthless. A run that
stopped early proves only the violated "max" bounds (more data could dilute a violation,
but the SLO must hold over every measured window); everything else about it is ERROR,
since a partial run can't prove a pass.

Exit codes (``exit_code``): 0 when every verdict is PASS or SKIP; 1 when any verdict
FAILS, even if others are ERROR, because a proven regression is the more useful news
(re-running a broken harness won't make it go away); 2 when nothing failed but something
is ERROR (result unknown: fix the harness or re-run), when there are no verdicts at all,
and, by the caller, for a ``ConfigError``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from loadtests.harness.gate_config import (
    ALL,
    CORRECTED_PREFIX,
    TAG_PREFIX,
    GateConfig,
    Threshold,
    metric_unit,
)
from loadtests.harness.model import (
    CheckResult,
    EndpointSummary,
    LatencyStats,
    LoadSummary,
    Outcome,
    Verdict,
    WorkerRoll,
)

EXIT_PASS = 0
EXIT_FAIL = 1
EXIT_ERROR = 2


@dataclass(frozen=True, slots=True)
class Observation:
    """A threshold's metric over its selection (several endpoints: lowest and highest)."""

    low: float  # the selection's lowest value, judged against min
    high: float  # its highest, judged against max
    observed: str
    detail: str = ""


def evaluate(
    config: GateConfig,
    summary: LoadSummary | None,
    checks: Sequence[CheckResult],
    *,
    steal_pct: float | None = None,
) -> list[Verdict]:
    """One Verdict per threshold (file order), then one per enabled check.

    ``steal_pct``: the machine's CPU steal during the run, when known. Above
    ``load.max_steal`` a *failed* latency or throughput threshold becomes ERROR
    (inconclusive); a pass stays a pass and error rates are judged as ever.
    """
    verdicts = [_judge_threshold(t, summary) for t in config.thresholds]
    if steal_pct is not None and steal_pct > config.load.max_steal_pct:
        verdicts = [
            _under_steal(v, t, steal_pct, config)
            for v, t in zip(verdicts, config.thresholds, strict=True)
        ]
    verdicts += _judge_checks(config.checks, checks)
    return verdicts


def judge_workers(expected: int, roll: WorkerRoll | None) -> Verdict:
    """A distributed run's workers: all there from the start to the end, none lost (its
    unsent requests would be missing from the merge) and none late (it got users but no
    share of the licenses), or the merged figures are not the run's: inconclusive."""
    want = f"{expected} all run"
    if roll is None:
        return Verdict("load", "workers", Outcome.ERROR, want, "-", "no word from the master")
    observed = f"{roll.at_start} at start, {roll.lost} lost, {roll.late} late"
    problems = []
    if roll.at_start < expected:
        problems.append(f"the load started with {roll.at_start} of {expected} workers")
    if roll.lost:
        problems.append(f"{roll.lost} lost during the run: its last requests are not counted")
    if roll.late:
        problems.append(f"{roll.late} joined during the run without a share of the licenses")
    if problems:
        detail = "inconclusive: " + "; ".join(problems)
        return Verdict("load", "workers", Outcome.ERROR, want, observed, detail)
    return Verdict("load", "workers", Outcome.PASS, want, observed)


def _under_steal(v: Verdict, t: Threshold, steal_pct: float, config: GateConfig) -> Verdict:
    if v.outcome is not Outcome.FAIL or t.metric == "error_rate":
        return v
    note = (
        f"inconclusive: the machine lost {steal_pct:.1f}% of its CPU to steal during the run"
        f" (load.max_steal {config.load.max_steal_pct:g}%); was fail"
    )
    return Verdict(v.kind, v.name, Outcome.ERROR, v.expected, v.observed, _join(note, v.detail))


def _judge_threshold(t: Threshold, summary: LoadSummary | None) -> Verdict:
    def verdict(outcome: Outcome, observed: str, detail: str) -> Verdict:
        return Verdict("threshold", t.label, outcome, t.expected, observed, detail)

    if summary is None:
        return verdict(Outcome.ERROR, "-", "the load run did not produce a summary")
    obs = observe(t, summary)
    if isinstance(obs, str):
        outcome, observed, detail = Outcome.FAIL, "no data", obs
        max_violated = False
    else:
        max_violated = _max_violated(t, obs)
        failed = max_violated or (t.min is not None and obs.low < t.min)
        outcome = Outcome.FAIL if failed else Outcome.PASS
        observed, detail = obs.observed, obs.detail
    if summary.aborted is not None:
        outcome, detail = _after_abort(outcome, max_violated, detail, summary.aborted)
    return verdict(outcome, observed, detail)


def _max_violated(t: Threshold, obs: Observation) -> bool:
    return t.max is not None and obs.high > t.max


def _after_abort(
    outcome: Outcome, max_violated: bool, detail: str, reason: str
) -> tuple[Outcome, str]:
    note = f"run stopped early ({reason})"
    if max_violated:
        return outcome, _join(detail, note)
    # A partial run proves no pass, and no "not enough" (min) or "no data" failure.
    return Outcome.ERROR, _join(f"not judged: {note}; was {outcome.value}", detail)


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def observe(t: Threshold, summary: LoadSummary) -> Observation | str:
    """The threshold's metric over its selection, or why there is nothing to judge."""
    selected = select(t.select, summary)
    if sum(ep.requests for ep in selected) == 0:
        seen = ", ".join(sorted(summary.endpoints)) or "none"
        return f"no requests matched {t.select!r} (request names seen: {seen})"
    if t.metric == "error_rate":
        return _error_rate(selected)
    if t.metric == "rps":
        rps = sum(ep.rps for ep in selected)
        return Observation(rps, rps, format_value("rps", rps))
    return _latency(t, selected)


def select(selector: str, summary: LoadSummary) -> list[EndpointSummary]:
    """The endpoints a threshold's ``select`` names, in name order."""
    endpoints = sorted(summary.endpoints.values(), key=lambda ep: ep.name)
    if selector == ALL:
        return endpoints
    if selector.startswith(TAG_PREFIX):
        tag = selector.removeprefix(TAG_PREFIX)
        return [ep for ep in endpoints if tag in ep.tags]
    return [ep for ep in endpoints if ep.name == selector]


def _error_rate(selected: Sequence[EndpointSummary]) -> Observation:
    requests = sum(ep.requests for ep in selected)
    failures = sum(ep.failures for ep in selected)
    rate = failures / requests
    return Observation(rate, rate, f"{format_value('error_rate', rate)} ({failures}/{requests})")


def _latency(t: Threshold, selected: Sequence[EndpointSummary]) -> Observation | str:
    corrected = t.metric.startswith(CORRECTED_PREFIX)
    metric = t.metric.removeprefix(CORRECTED_PREFIX)
    measured = [(ep.name, s) for ep in selected if (s := _stats(ep, corrected)) is not None]
    if not measured:
        if corrected:
            return "no corrected latency recorded: only paced users record intended send times"
        return f"no successful requests to time ({sum(ep.failures for ep in selected)} failed)"
    values = [(name, stats.value(metric)) for name, stats in measured]
    low = min(values, key=lambda nv: nv[1])
    high = max(values, key=lambda nv: nv[1])
    if len(values) == 1:
        return Observation(low[1], high[1], format_value(t.metric, high[1]))
    return _worst_of(t, low, high, len(values), len(selected) - len(values))


def _stats(ep: EndpointSummary, corrected: bool) -> LatencyStats | None:
    stats = ep.corrected if corrected else ep.ok
    return stats if stats is not None and stats.count > 0 else None


def _worst_of(
    t: Threshold,
    low: tuple[str, float],
    high: tuple[str, float],
    judged: int,
    unmeasured: int,
) -> Observation:
    # Name the endpoint that decides the verdict: the lowest for a min-only bound, the
    # one violating a bound if any does, else the highest.
    min_only = t.max is None
    low_fails = t.min is not None and low[1] < t.min
    high_fails = t.max is not None and high[1] > t.max
    worst = low if min_only or (low_fails and not high_fails) else high
    if t.max is not None and t.min is not None:
        observed = f"{format_value(t.metric, low[1])}..{format_value(t.metric, high[1])}"
    else:
        observed = format_value(t.metric, worst[1])
    detail = (
        f"worst of {judged} endpoints: {worst[0]}; each endpoint is judged on its own "
        "(percentiles of separate endpoints can't be merged)"
    )
    if unmeasured:
        detail += f"; {unmeasured} endpoint(s) with nothing to time not judged"
    return Observation(low[1], high[1], observed, detail)


def format_value(metric: str, value: float) -> str:
    """A metric's value with its unit, to the precision the data has (HDR: 3 digits)."""
    if metric == "error_rate":
        return f"{value:.4g}"
    if value >= 100:
        text = f"{value:.0f}"
    elif value >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return text + metric_unit(metric)


def _judge_checks(enabled: Mapping[str, bool], results: Sequence[CheckResult]) -> list[Verdict]:
    by_name: dict[str, list[CheckResult]] = {}
    for result in results:
        by_name.setdefault(result.name, []).append(result)
    verdicts = [_judge_check(name, by_name.get(name, [])) for name, on in enabled.items() if on]
    # A result the config has no entry for means the harness and this module disagree
    # on the list of checks; say so rather than drop it.
    verdicts += [
        Verdict("check", name, Outcome.ERROR, "pass", "-", "no [checks] entry for this check")
        for name in by_name
        if name not in enabled
    ]
    return verdicts


def _judge_check(name: str, results: Sequence[CheckResult]) -> Verdict:
    if not results:
        detail = "enabled in [checks] but the harness produced no result"
        return Verdict("check", name, Outcome.ERROR, "pass", "-", detail)
    if len(results) > 1:
        detail = f"{len(results)} results for one check"
        return Verdict("check", name, Outcome.ERROR, "pass", "-", detail)
    result = results[0]
    return Verdict("check", name, result.outcome, "pass", result.outcome.value, result.detail)


# --------------------------------------------------------------------------- abort, exit


def should_abort(config: GateConfig, summary: LoadSummary, elapsed_s: float) -> str | None:
    """Why to stop the run now, or None.

    Only after the warmup, and only "max" bounds of error_rate and latency thresholds:
    partial data can prove that such a bound is already broken, never that a threshold
    will pass, and a "min" (e.g. min rps, still ramping up) can't be judged early.
    Missing data is not a reason either: the endpoint may just not have been hit yet.
    """
    if not config.load.abort_early or elapsed_s < config.load.warmup_s:
        return None
    for t in config.thresholds:
        if t.max is None or t.metric == "rps":
            continue
        obs = observe(t, summary)
        if not isinstance(obs, str) and _max_violated(t, obs):
            return f"{t.label}: observed {obs.observed} after {elapsed_s:.0f}s"
    return None


def exit_code(verdicts: Sequence[Verdict]) -> int:
    """0 all PASS/SKIP; 1 any FAIL (even beside ERRORs); 2 any ERROR, or nothing judged."""
    outcomes = {v.outcome for v in verdicts}
    if Outcome.FAIL in outcomes:
        return EXIT_FAIL
    if Outcome.ERROR in outcomes or not verdicts:
        return EXIT_ERROR
    return EXIT_PASS


__all__ = [
    "EXIT_ERROR",
    "EXIT_FAIL",
    "EXIT_PASS",
    "Observation",
    "evaluate",
    "exit_code",
    "format_value",
    "observe",
    "select",
    "should_abort",
]
