"""Load shapes as Locust ``LoadTestShape`` stages: ramp, spike, soak.

A workload file exposes the shape named by ``LH_LOAD_SHAPE`` (or none, and
``-u/-r/-t`` decide). ``LH_LOAD_USERS`` sets the peak (default 50) and
``LH_LOAD_SECONDS`` the total length (default 60); each shape divides that
time into its stages.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import ClassVar

from locust import LoadTestShape


@dataclass(frozen=True, slots=True)
class Stage:
    until: float  # seconds since the start
    users: int
    spawn_rate: float


def ramp(peak: int, seconds: float) -> list[Stage]:
    """Up in four steps, hold, then down: where does latency start to bend?"""
    step = seconds / 6
    return [
        Stage(step, max(1, peak // 4), peak),
        Stage(2 * step, max(1, peak // 2), peak),
        Stage(3 * step, max(1, 3 * peak // 4), peak),
        Stage(5 * step, peak, peak),
        Stage(seconds, max(1, peak // 4), peak),
    ]


def spike(peak: int, seconds: float) -> list[Stage]:
    """A quiet fleet, then every till at once (opening time), then quiet again."""
    base = max(1, peak // 10)
    return [
        Stage(seconds * 0.3, base, base),
        Stage(seconds * 0.5, peak, peak * 5),  # the spike arrives within a fifth of a second
        Stage(seconds, base, peak * 5),
    ]


def soak(peak: int, seconds: float) -> list[Stage]:
    """A steady load for the whole run: leaks and slow drifts show up here."""
    return [Stage(seconds, peak, peak)]


SHAPES = {"ramp": ramp, "spike": spike, "soak": soak}


class StagedShape(LoadTestShape):
    stages: ClassVar[list[Stage]] = []

    def tick(self) -> tuple[int, float] | None:
        elapsed: float = self.get_run_time()  # type: ignore[no-untyped-call]
        for stage in self.stages:
            if elapsed < stage.until:
                return stage.users, stage.spawn_rate
        return None  # past the last stage: the run ends by itself


def shape_from_env() -> type[StagedShape] | None:
    name = os.environ.get("LH_LOAD_SHAPE", "").strip()
    if not name:
        return None
    if name not in SHAPES:
        raise SystemExit(f"LH_LOAD_SHAPE must be one of {', '.join(SHAPES)}, got {name!r}")
    peak = int(os.environ.get("LH_LOAD_USERS", "50"))
    seconds = float(os.environ.get("LH_LOAD_SECONDS", "60"))
    stages = SHAPES[name](peak, seconds)
    return type(f"{name.title()}Shape", (StagedShape,), {"stages": stages})
