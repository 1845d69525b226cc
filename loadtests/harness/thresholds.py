"""The release gate's configuration (TOML) and its judgement: pure functions, no I/O but reading.

Schema
======

A gate file has three top-level tables and nothing else; unknown keys anywhere are
errors, so a typo (``mx = 10``) can't silently disable a threshold::

    [load]                      # the run the gate makes; every key optional (defaults shown)
    workload = "mixed"          # validation | sessions | webhooks | mixed | open
    users = 50                  # Locust users (>= 1)
    spawn_rate = 50             # users started per second (> 0)
    duration = "60s"            # run time: "90s", "2m", "1m30s", "1h", or integer seconds (> 0)
    processes = 1               # Locust --processes: >= 1, or -1 for one per CPU core
    warmup = "10s"              # abort-early not judged before this (< duration if abort_early)
    abort_early = false         # stop the run as soon as a "max" threshold is violated
    open_rate = 200.0           # open model only: iterations started per second (> 0)
    customers = 500             # licenses provisioned for the run (>= 1)

    [[threshold]]               # any number, judged in file order
    select = "validate"         # a request name, "tag:<tag>", or "*" (all requests)
    metric = "p99"              # see METRICS below
    max = 10.0                  # and/or min = ...; at least one; both means a range

    [checks]                    # live invariant checks: name = true/false
    cache_tiers = true          # a name left out is enabled: the gate is strict by default
    heartbeat_expiry = true
    conflict_takeover = true
    no_grace = true
    webhook_idempotency = true

Metrics: ``p50 p90 p95 p99 p99.9 max mean`` are milliseconds over successful requests;
``corrected_<that>`` (e.g. ``corrected_p99``) is the same measured from each request's
*intended* send time, which only paced users record (coordinated omission); ``error_rate``
is failures / requests (0..1); ``rps`` is requests (successes and failures) per second.

Selections: a request name matches that endpoint; ``tag:x`` every endpoint tagged ``x``;
``*`` every endpoint. ``error_rate`` and ``rps`` are summed over the selection. Latency
of several endpoints is judged per endpoint and the worst one reported: separate
percentiles can't be merged, but if every endpoint's p99 is within a max bound then so is
the p99 of all of them together, so judging the worst is sound (and likewise for mean).

Outcomes: a threshold with no data (nothing matched, no successes to time, no corrected
latency recorded) FAILS, because a gate that passes on no data is worthless. A run that
stopped early proves only the violated "max" bounds (more data could dilute a violation,
but the SLO must hold over every measured window); everything else about it is ERROR,
since a partial run can't prove a pass. Errors in the file raise ``ConfigError``, whose
message names the key (thresholds are numbered from 1: ``threshold[2].metric``).

Exit codes (``exit_code``): 0 when every verdict is PASS or SKIP; 1 when any verdict
FAILS, even if others are ERROR, because a proven regression is the more useful news
(re-running a broken harness won't make it go away); 2 when nothing failed but something
is ERROR (result unknown: fix the harness or re-run), when there are no verdicts at all,
and, by the caller, for a ``ConfigError``.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from loadtests.harness.model import (
    CheckResult,
    EndpointSummary,
    LatencyStats,
    LoadSummary,
    Outcome,
    Verdict,
)

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "gate.toml"

EXIT_PASS = 0
EXIT_FAIL = 1
EXIT_ERROR = 2

WORKLOADS = ("validation", "sessions", "webhooks", "mixed", "open")
KNOWN_CHECKS = (
    "cache_tiers",
    "heartbeat_expiry",
    "conflict_takeover",
    "no_grace",
    "webhook_idempotency",
)
LATENCY_METRICS = ("p50", "p90", "p95", "p99", "p99.9", "max", "mean")
CORRECTED_PREFIX = "corrected_"
METRICS = (
    *LATENCY_METRICS,
    *(CORRECTED_PREFIX + m for m in LATENCY_METRICS),
    "error_rate",
    "rps",
)
ALL = "*"
TAG_PREFIX = "tag:"


class ConfigError(ValueError):
    """A gate file the gate refuses; the message names the key and the problem."""

    def __init__(self, key: str, problem: str, source: str | None = None) -> None:
        self.key = key
        self.problem = problem
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{key}: {problem}")


@dataclass(frozen=True, slots=True)
class LoadConfig:
    workload: str = "mixed"
    users: int = 50
    spawn_rate: float = 50.0
    duration_s: int = 60
    processes: int = 1
    warmup_s: int = 10
    abort_early: bool = False
    open_rate: float = 200.0
    customers: int = 500
    # CPU steal (% of the machine's time taken by the hypervisor) above which a
    # failed latency or throughput threshold is reported inconclusive (exit 2),
    # not failed: on a shared machine, a steal burst is not a regression.
    max_steal_pct: float = 5.0


@dataclass(frozen=True, slots=True)
class Threshold:
    select: str
    metric: str
    max: float | None = None
    min: float | None = None

    @property
    def is_latency(self) -> bool:
        return self.metric not in ("error_rate", "rps")

    @property
    def expected(self) -> str:
        """The bound as people read it: "<= 10 ms", ">= 100/s", "5..10 ms"."""
        unit = _unit(self.metric)
        if self.max is not None and self.min is not None:
            return f"{self.min:g}..{self.max:g}{unit}"
        if self.max is not None:
            return f"<= {self.max:g}{unit}"
        return f">= {self.min:g}{unit}"

    @property
    def label(self) -> str:
        return f"{self.select} {self.metric} {self.expected}"


@dataclass(frozen=True, slots=True)
class GateConfig:
    load: LoadConfig
    thresholds: tuple[Threshold, ...]
    checks: dict[str, bool] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- parsing


def load_config(path: Path | None = None) -> GateConfig:
    """Read a gate file (None: the packaged ``loadtests/gate.toml``)."""
    path = DEFAULT_CONFIG if path is None else path
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("(file)", f"cannot read: {exc}", source=str(path)) from exc
    try:
        return loads_config(text)
    except ConfigError as exc:
        raise ConfigError(exc.key, exc.problem, source=str(path)) from exc


def loads_config(text: str) -> GateConfig:
    """Parse a gate file's text."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("(toml)", f"not valid TOML: {exc}") from exc
    return parse_config(data)


def parse_config(data: Mapping[str, Any]) -> GateConfig:
    """Validate an already-decoded gate file strictly."""
    _no_unknown_keys(data, ("load", "threshold", "checks"), "")
    load = _parse_load(_table(data, "load"))
    raw_thresholds = data.get("threshold", [])
    if not isinstance(raw_thresholds, list):
        raise ConfigError("threshold", "must be an array of tables: write [[threshold]]")
    thresholds = tuple(
        _parse_threshold(raw, f"threshold[{n}]") for n, raw in enumerate(raw_thresholds, start=1)
    )
    checks = _parse_checks(_table(data, "checks"))
    if not thresholds and not any(checks.values()):
        nothing = "no thresholds and no checks enabled: the gate would judge nothing"
        raise ConfigError("threshold", nothing)
    return GateConfig(load=load, thresholds=thresholds, checks=checks)


def _table(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    raw = data.get(key, {})
    if not isinstance(raw, dict):
        raise ConfigError(key, f"must be a table: write [{key}]")
    return raw


def _no_unknown_keys(table: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
    for key in table:
        if key not in allowed:
            raise ConfigError(
                _key(where, key), f"unknown key; expected one of: {', '.join(allowed)}"
            )


def _key(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _parse_load(table: Mapping[str, Any]) -> LoadConfig:
    _no_unknown_keys(table, _LOAD_KEYS, "load")
    d = LoadConfig()
    workload = _get(table, "load", "workload", str, d.workload)
    if workload not in WORKLOADS:
        problem = f"unknown workload {workload!r}; expected one of: {_or(WORKLOADS)}"
        raise ConfigError("load.workload", problem)
    config = LoadConfig(
        workload=workload,
        users=_int(table, "users", d.users, minimum=1),
        spawn_rate=_positive(table, "spawn_rate", d.spawn_rate),
        duration_s=_duration(table, "duration", d.duration_s),
        processes=_processes(table, d.processes),
        warmup_s=_duration(table, "warmup", d.warmup_s),
        abort_early=_get(table, "load", "abort_early", bool, d.abort_early),
        open_rate=_positive(table, "open_rate", d.open_rate),
        customers=_int(table, "customers", d.customers, minimum=1),
        max_steal_pct=_positive(table, "max_steal", d.max_steal_pct),
    )
    if config.duration_s == 0:
        raise ConfigError("load.duration", "must be positive")
    if config.abort_early and config.warmup_s >= config.duration_s:
        # Otherwise abort-early is switched on but could never fire.
        raise ConfigError("load.warmup", "must be shorter than load.duration when abort_early")
    return config


_T = TypeVar("_T")

_LOAD_KEYS = (
    "workload",
    "users",
    "spawn_rate",
    "duration",
    "processes",
    "warmup",
    "abort_early",
    "open_rate",
    "customers",
    "max_steal",
)


def _get(table: Mapping[str, Any], where: str, key: str, kind: type[_T], default: _T) -> _T:
    value = table.get(key, default)
    # bool is an int subclass: "users = true" must not pass as 1.
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ConfigError(_key(where, key), f"must be {_kind_name(kind)}, not {value!r}")
    return value


def _kind_name(kind: type) -> str:
    return {str: "a string", bool: "true or false", int: "an integer"}.get(kind, kind.__name__)


def _or(names: Sequence[str]) -> str:
    return ", ".join(names)


def _int(table: Mapping[str, Any], key: str, default: int, minimum: int) -> int:
    value = _get(table, "load", key, int, default)
    if value < minimum:
        raise ConfigError(f"load.{key}", f"must be at least {minimum}, not {value}")
    return value


def _processes(table: Mapping[str, Any], default: int) -> int:
    value = _get(table, "load", "processes", int, default)
    if value == 0 or value < -1:
        raise ConfigError("load.processes", f"must be >= 1, or -1 for one per core, not {value}")
    return value


def _number(value: object, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(key, f"must be a number, not {value!r}")
    if not math.isfinite(value):
        raise ConfigError(key, f"must be finite, not {value!r}")
    return float(value)


def _positive(table: Mapping[str, Any], key: str, default: float) -> float:
    value = _number(table.get(key, default), f"load.{key}")
    if value <= 0:
        raise ConfigError(f"load.{key}", f"must be positive, not {value:g}")
    return value


# Locust's --run-time grammar: whole hours, minutes and seconds, in that order.
_DURATION = re.compile(r"(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?")


def _duration(table: Mapping[str, Any], key: str, default: int) -> int:
    value = table.get(key, default)
    name = f"load.{key}"
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ConfigError(name, f"negative duration {value}")
        return value
    if not isinstance(value, str):
        raise ConfigError(name, f'must be a duration like "90s", "2m" or "1m30s", not {value!r}')
    return parse_duration(value, name)


def parse_duration(text: str, key: str = "duration") -> int:
    """Seconds in "90s", "2m", "1m30s", "1h"; ConfigError naming ``key`` otherwise."""
    if text.strip().startswith("-"):
        raise ConfigError(key, f"negative duration {text!r}")
    match = _DURATION.fullmatch(text)
    if not text or match is None:
        raise ConfigError(key, f'unparseable duration {text!r}; write e.g. "90s", "2m", "1m30s"')
    hours, minutes, seconds = (int(match.group(g) or 0) for g in ("h", "m", "s"))
    return hours * 3600 + minutes * 60 + seconds


def _parse_threshold(raw: object, where: str) -> Threshold:
    if not isinstance(raw, dict):
        raise ConfigError(where, "must be a table: write [[threshold]]")
    _no_unknown_keys(raw, ("select", "metric", "max", "min"), where)
    select = _required_str(raw, "select", where)
    if select.startswith(TAG_PREFIX) and not select.removeprefix(TAG_PREFIX):
        raise ConfigError(f"{where}.select", 'empty tag; write e.g. "tag:licensing"')
    metric = _required_str(raw, "metric", where)
    if metric not in METRICS:
        known = _or(METRICS)
        raise ConfigError(f"{where}.metric", f"unknown metric {metric!r}; expected one of: {known}")
    bounds = {k: _bound(raw[k], metric, f"{where}.{k}") for k in ("max", "min") if k in raw}
    if not bounds:
        raise ConfigError(where, "needs max or min (or both)")
    if "max" in bounds and "min" in bounds and bounds["min"] > bounds["max"]:
        raise ConfigError(f"{where}.min", f"min {bounds['min']:g} is above max {bounds['max']:g}")
    return Threshold(select=select, metric=metric, max=bounds.get("max"), min=bounds.get("min"))


def _required_str(raw: Mapping[str, Any], key: str, where: str) -> str:
    if key not in raw:
        raise ConfigError(f"{where}.{key}", "missing")
    value = raw[key]
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}.{key}", f"must be a non-empty string, not {value!r}")
    return value


def _bound(value: object, metric: str, key: str) -> float:
    number = _number(value, key)
    if number < 0:
        raise ConfigError(key, f"must not be negative, not {number:g}")
    if metric == "error_rate" and number > 1:
        raise ConfigError(key, f"error_rate is a fraction 0..1, not {number:g}")
    return number


def _parse_checks(table: Mapping[str, Any]) -> dict[str, bool]:
    _no_unknown_keys(table, KNOWN_CHECKS, "checks")
    return {name: _get(table, "checks", name, bool, True) for name in KNOWN_CHECKS}


# --------------------------------------------------------------------------- evaluation


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


def _unit(metric: str) -> str:
    if metric == "rps":
        return "/s"
    if metric == "error_rate":
        return ""
    return " ms"


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
    return text + _unit(metric)


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
    "ALL",
    "DEFAULT_CONFIG",
    "EXIT_ERROR",
    "EXIT_FAIL",
    "EXIT_PASS",
    "KNOWN_CHECKS",
    "LATENCY_METRICS",
    "METRICS",
    "TAG_PREFIX",
    "WORKLOADS",
    "ConfigError",
    "GateConfig",
    "LoadConfig",
    "Observation",
    "Threshold",
    "evaluate",
    "exit_code",
    "format_value",
    "load_config",
    "loads_config",
    "observe",
    "parse_config",
    "parse_duration",
    "select",
    "should_abort",
]
