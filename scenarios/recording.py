"""What happened during a rehearsal: every answer, the breaker as /health told it,
the fault windows, the clock moves, the steps. The expectations judge this alone,
so a recording saved in a report can be judged again, and a planted one can prove
that an expectation fails.

Times (``t``) are seconds on the runner's monotonic clock since the rehearsal
began; ``server_time`` is the service's own (possibly moved) clock, ISO-8601.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from loadtests.rehearsal_load import Answer


@dataclass(frozen=True, slots=True)
class BreakerSample:
    t: float
    state: str  # CLOSED, OPEN, HALF_OPEN, or "unreachable"
    failures: int
    health: str  # healthy, degraded, unhealthy, unreachable
    server_time: str | None = None
    next_attempt: str | None = None


@dataclass(frozen=True, slots=True)
class FaultWindow:
    start: float
    end: float | None  # None: still on when the recording ended
    names: tuple[str, ...]  # "db.errors", "stripe.timeout", "proxy.blackhole", ...

    def covers(self, t: float, end: float) -> bool:
        return self.start <= t <= (self.end if self.end is not None else end)

    def matches(self, prefix: str | None) -> bool:
        return prefix is None or any(n == prefix or n.startswith(prefix + ".") for n in self.names)


@dataclass(frozen=True, slots=True)
class ClockMove:
    t: float
    seconds: float


@dataclass(frozen=True, slots=True)
class StepRecord:
    phase: str  # method, rollbacks
    index: int
    kind: str
    label: str
    start: float
    end: float
    ok: bool
    detail: str = ""


@dataclass(frozen=True, slots=True)
class OutboxSample:
    t: float
    queued: int  # not delivered yet
    delivered: int
    total: int
    # Lines in the service's email sink, and the distinct emails among them (a
    # difference is an email sent twice); -1 when the sink is not ours to read.
    sent: int = -1
    sent_distinct: int = -1


@dataclass(slots=True)
class Recording:
    answers: list[Answer] = field(default_factory=list)
    breaker: list[BreakerSample] = field(default_factory=list)
    faults: list[FaultWindow] = field(default_factory=list)
    clock_moves: list[ClockMove] = field(default_factory=list)
    steps: list[StepRecord] = field(default_factory=list)
    outbox: list[OutboxSample] = field(default_factory=list)
    storms: list[dict[str, Any]] = field(default_factory=list)  # StormResult.summary() each
    # Read from PostgreSQL every 0.5 s: {"t", "alive": licenses with an active
    # session, "doubled": licenses with more than one}.
    sessions: list[dict[str, Any]] = field(default_factory=list)
    # What the runner knows of the service: breaker_threshold, breaker_open_seconds.
    params: dict[str, Any] = field(default_factory=dict)
    end: float = 0.0

    # ------------------------------------------------------------ questions

    def fault_windows(self, prefix: str | None = None) -> list[FaultWindow]:
        return [w for w in self.faults if w.matches(prefix)]

    def in_fault(self, t: float, prefix: str | None = None) -> bool:
        return any(w.covers(t, self.end) for w in self.fault_windows(prefix))

    def first_fault_start(self, prefix: str | None = None) -> float | None:
        windows = self.fault_windows(prefix)
        return min(w.start for w in windows) if windows else None

    def last_fault_end(self, prefix: str | None = None) -> float | None:
        windows = self.fault_windows(prefix)
        if not windows:
            return None
        return max(w.end if w.end is not None else self.end for w in windows)

    def within_fault(self, a: Answer, prefix: str | None = None) -> bool:
        """Sent and answered inside one fault window: a request in flight when a
        fault began or ended may rightly see either side."""
        done = a.t + a.latency_ms / 1000
        for w in self.fault_windows(prefix):
            end = w.end if w.end is not None else self.end
            if w.start <= a.t and done <= end:
                return True
        return False

    # ------------------------------------------------------------ files

    def to_dict(self) -> dict[str, Any]:
        return {
            "answers": [a.to_dict() for a in self.answers],
            "breaker": [asdict(s) for s in self.breaker],
            "faults": [asdict(w) for w in self.faults],
            "clock_moves": [asdict(m) for m in self.clock_moves],
            "steps": [asdict(s) for s in self.steps],
            "outbox": [asdict(o) for o in self.outbox],
            "storms": self.storms,
            "sessions": self.sessions,
            "params": self.params,
            "end": self.end,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Recording:
        return cls(
            answers=[Answer.from_dict(a) for a in data.get("answers", [])],
            breaker=[BreakerSample(**s) for s in data.get("breaker", [])],
            faults=[
                FaultWindow(w["start"], w["end"], tuple(w["names"])) for w in data.get("faults", [])
            ],
            clock_moves=[ClockMove(**m) for m in data.get("clock_moves", [])],
            steps=[StepRecord(**s) for s in data.get("steps", [])],
            outbox=[OutboxSample(**o) for o in data.get("outbox", [])],
            storms=list(data.get("storms", [])),
            sessions=list(data.get("sessions", [])),
            params=dict(data.get("params", {})),
            end=float(data.get("end", 0.0)),
        )

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), separators=(",", ":")), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Recording:
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))


@dataclass(frozen=True, slots=True)
class Transition:
    t: float
    state: str
    failures: int
    server_time: str | None


def transitions(samples: Iterable[BreakerSample]) -> list[Transition]:
    """Each change of (state, failures) the poller saw, the first sample included."""
    out: list[Transition] = []
    last: tuple[str, int] | None = None
    for s in samples:
        key = (s.state, s.failures)
        if key != last:
            out.append(Transition(s.t, s.state, s.failures, s.server_time))
            last = key
    return out


def state_changes(samples: Iterable[BreakerSample]) -> list[Transition]:
    """Each change of state alone (what the timeline shows)."""
    out: list[Transition] = []
    for tr in transitions(samples):
        if not out or out[-1].state != tr.state:
            out.append(tr)
    return out


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), -(-len(ordered) * q // 100)))
    return ordered[int(rank) - 1]


__all__ = [
    "Answer",
    "BreakerSample",
    "ClockMove",
    "FaultWindow",
    "OutboxSample",
    "Recording",
    "StepRecord",
    "Transition",
    "parse_time",
    "percentile",
    "state_changes",
    "transitions",
]
