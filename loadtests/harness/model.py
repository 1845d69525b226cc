"""The data the gate's parts hand each other, as plain dataclasses.

``LoadSummary`` is what a Locust run produces (built from merged HDR
histograms on the master), ``CheckResult`` what a live invariant check
produces; thresholds and checks become ``Verdict`` rows, and reports render
those. All of it is JSON-serialisable with ``to_dict``/``from_dict``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

# Percentiles the report always gives, by their names in summaries and TOML.
PERCENTILES: dict[str, float] = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "p99.9": 99.9}


@dataclass(frozen=True, slots=True)
class LatencyStats:
    """Milliseconds, from an HDR histogram (3 significant digits): p99 never exceeds max."""

    count: int
    mean: float
    p50: float
    p90: float
    p95: float
    p99: float
    p999: float
    max: float

    def value(self, metric: str) -> float:
        """``metric`` as written in gate.toml: p50, p90, p95, p99, p99.9, max, mean."""
        name = "p999" if metric == "p99.9" else metric
        return float(getattr(self, name))


@dataclass(frozen=True, slots=True)
class EndpointSummary:
    name: str  # the Locust request name, e.g. "validate", "session heartbeat", "webhook"
    tags: tuple[str, ...]  # e.g. ("licensing",), ("sessions",), ("stripe",)
    ok: LatencyStats | None  # successes only
    failed: LatencyStats | None  # failures only, kept apart
    # Paced users: latency from the *intended* send time (coordinated omission corrected).
    corrected: LatencyStats | None
    requests: int
    failures: int
    rps: float  # requests (ok + failed) per second over the measured duration

    @property
    def error_rate(self) -> float:
        return self.failures / self.requests if self.requests else 0.0


@dataclass(frozen=True, slots=True)
class TimelinePoint:
    second: int  # seconds since the start of the run
    requests: int
    failures: int
    p50: float | None
    p95: float | None
    p99: float | None
    # That second's p99 of each request name with a success in it (ms).
    p99_by_endpoint: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OpenModelStats:
    target_rate: float  # iterations per second asked for
    iterations: int  # started
    late: int  # started after their scheduled time by more than the tolerance
    dropped: int  # never started: no free virtual user at their scheduled time


@dataclass(frozen=True, slots=True)
class LoadSummary:
    duration_s: float
    endpoints: dict[str, EndpointSummary]
    timeline: list[TimelinePoint] = field(default_factory=list)
    open_model: OpenModelStats | None = None
    aborted: str | None = None  # why the run was stopped early, if it was

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoadSummary:
        def stats(raw: dict[str, Any] | None) -> LatencyStats | None:
            return LatencyStats(**raw) if raw is not None else None

        endpoints = {
            name: EndpointSummary(
                name=raw["name"],
                tags=tuple(raw["tags"]),
                ok=stats(raw["ok"]),
                failed=stats(raw["failed"]),
                corrected=stats(raw["corrected"]),
                requests=raw["requests"],
                failures=raw["failures"],
                rps=raw["rps"],
            )
            for name, raw in data["endpoints"].items()
        }
        om = data.get("open_model")
        return cls(
            duration_s=data["duration_s"],
            endpoints=endpoints,
            timeline=[TimelinePoint(**p) for p in data.get("timeline", [])],
            open_model=OpenModelStats(**om) if om else None,
            aborted=data.get("aborted"),
        )


class Outcome(StrEnum):
    PASS = "pass"  # noqa: S105 - an outcome, not a password
    FAIL = "fail"
    SKIP = "skip"  # not evaluated, with a stated reason (e.g. no test clock on --target)
    ERROR = "error"  # the harness could not evaluate it


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str  # e.g. "cache_tiers", "heartbeat_expiry", "conflict_takeover", "no_grace", ...
    outcome: Outcome
    detail: str  # one line a person can act on: what was expected, what was seen
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class Verdict:
    kind: str  # "threshold" or "check"
    name: str  # e.g. "validate p99 <= 10 ms", or a check name
    outcome: Outcome
    expected: str
    observed: str
    detail: str = ""


@dataclass(slots=True)
class WorkerRoll:
    """A distributed run's workers, as the Locust master saw them (``workers.json``)."""

    state: str = "ready"  # the master's runner state: ready, spawning, running, stopped...
    connected: int = 0  # ready, spawning or running now
    expected: int = 0  # --expect-workers
    at_start: int = 0  # connected when the test started (each got a share)
    lost: int = 0  # how far below at_start the connected count fell during the run
    late: int = 0  # connected during the run: given users by Locust, but no share

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorkerRoll:
        return cls(**{k: data[k] for k in cls.__slots__ if k in data})
