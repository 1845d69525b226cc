"""The open model's accounting: iterations started, late and dropped, mergeable across processes.

Its own module because both sides need it: the pacer (:mod:`.pacing`) counts into it,
and the histograms (:mod:`.histograms`) carry it from workers to the master.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from loadtests.harness.model import OpenModelStats

DEFAULT_LATE_TOLERANCE_S = 0.01


class OpenModelCounter:
    """Iterations started, late and dropped, and the rates asked for; mergeable.

    Rates are kept by key (one per paced user), so a user whose task runs the pacer
    again counts its rate once; the target rate is their sum. Counts add up across
    processes; ``encode``/``merge_encoded`` carry them from workers to the master.
    """

    def __init__(self, late_tolerance_s: float = DEFAULT_LATE_TOLERANCE_S) -> None:
        if late_tolerance_s < 0:
            raise ValueError("late_tolerance_s must not be negative")
        self.late_tolerance_s = late_tolerance_s
        self.rates: dict[str, float] = {}
        self.iterations = 0
        self.late = 0
        self.dropped = 0

    def add_rate(self, key: str, rate: float) -> None:
        self.rates[key] = rate

    def record_start(self, intended: float, actual: float) -> bool:
        """Count an iteration that started at ``actual``; True if it was late."""
        self.iterations += 1
        late = actual - intended > self.late_tolerance_s
        if late:
            self.late += 1
        return late

    def record_dropped(self) -> None:
        self.dropped += 1

    def stats(self) -> OpenModelStats | None:
        """None when no paced user ran (a closed-model run has no open-model stats)."""
        if not self.rates and not (self.iterations or self.dropped):
            return None
        return OpenModelStats(
            target_rate=sum(self.rates.values()),
            iterations=self.iterations,
            late=self.late,
            dropped=self.dropped,
        )

    def encode(self) -> dict[str, Any]:
        return {
            "rates": dict(self.rates),
            "iterations": self.iterations,
            "late": self.late,
            "dropped": self.dropped,
        }

    def merge_encoded(self, data: Mapping[str, Any]) -> None:
        self.rates.update({str(k): float(v) for k, v in data["rates"].items()})
        self.iterations += int(data["iterations"])
        self.late += int(data["late"])
        self.dropped += int(data["dropped"])

    def reset(self) -> None:
        self.rates.clear()
        self.iterations = self.late = self.dropped = 0
