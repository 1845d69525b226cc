"""A monotonic clock moved by hand, for code that takes ``monotonic=`` (or ``clock=``)."""

from __future__ import annotations


class Ticks:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
