"""The rehearsal's live timeline on the terminal: fault windows, breaker transitions
with their timestamps, requests and errors per second.

On a TTY, a live display (rich) redrawn four times a second; anywhere else (a CI
log), every event on a line of its own as it happens and one plain status line
every few seconds, with no carriage return or cursor movement: a log file reads
top to bottom.

The wording is pure (:func:`status_line`, :func:`per_second`), fed by the runner.
"""

from __future__ import annotations

import sys
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

from loadtests.rehearsal_load import Answer

if TYPE_CHECKING:
    from rich.console import Group

PLAIN_EVERY_S = 3.0
LIVE_FPS = 4
EVENTS_SHOWN = 12


@dataclass(frozen=True, slots=True)
class Second:
    second: int
    requests: int
    errors: int  # 5xx or no answer
    degraded: int


def per_second(answers: Sequence[Answer]) -> list[Second]:
    """Requests, errors and degraded answers in each whole second of the run."""
    if not answers:
        return []
    last = int(max(a.t for a in answers))
    counts = [[0, 0, 0] for _ in range(last + 1)]
    for a in answers:
        row = counts[max(0, int(a.t))]
        row[0] += 1
        row[1] += 0 if a.answered else 1
        row[2] += 1 if a.degraded else 0
    return [Second(n, *row) for n, row in enumerate(counts)]


@dataclass(frozen=True, slots=True)
class Status:
    t: float
    step: str
    faults: Sequence[str]
    breaker: str
    answers: Sequence[Answer]


def status_line(status: Status) -> str:
    """One line: ``[ 12.0s] <step> | faults db.errors | breaker OPEN | 412 req/s,
    3.1% errors, 96% degraded | <answers so far>``."""
    recent = [a for a in status.answers if status.t - 1.0 <= a.t < status.t]
    rate = len(recent)
    errors = sum(1 for a in recent if not a.answered)
    degraded = sum(1 for a in recent if a.degraded)
    errors_pct = 100 * errors / rate if rate else 0.0
    degraded_pct = 100 * degraded / rate if rate else 0.0
    faults = ", ".join(status.faults) or "none"
    return (
        f"[{status.t:6.1f}s] {status.step} | faults {faults} | breaker {status.breaker}"
        f" | {rate} req/s, {errors_pct:.1f}% errors, {degraded_pct:.0f}% degraded"
        f" | {len(status.answers)} answers"
    )


class Timeline:
    """Prints events as they happen and the status now and then; ``snapshot``
    gives the current :class:`Status` (called from the display's thread)."""

    def __init__(
        self, snapshot: Callable[[], Status], out: TextIO | None = None, live: bool | None = None
    ) -> None:
        self.snapshot = snapshot
        self.out = out if out is not None else sys.stdout
        self.live = self.out.isatty() if live is None else live
        self._events: deque[str] = deque(maxlen=EVENTS_SHOWN)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._rich: object = None

    def event(self, t: float, text: str) -> None:
        line = f"[{t:6.1f}s] {text}"
        self._events.append(line)
        if not self.live:
            print(line, file=self.out, flush=True)

    def __enter__(self) -> Timeline:
        if self.live:
            from rich.console import Console
            from rich.live import Live

            live = Live(
                self._render(),
                console=Console(file=self.out),
                refresh_per_second=LIVE_FPS,
                transient=False,
            )
            live.start()
            self._rich = live
        self._thread = threading.Thread(target=self._run, name="timeline", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
        if self._rich is not None:
            self._rich.update(self._render())  # type: ignore[attr-defined]
            self._rich.stop()  # type: ignore[attr-defined]
        else:
            print(status_line(self.snapshot()), file=self.out, flush=True)

    def _run(self) -> None:
        interval = 1 / LIVE_FPS if self.live else PLAIN_EVERY_S
        while not self._stop.wait(interval):
            if self._rich is not None:
                self._rich.update(self._render())  # type: ignore[attr-defined]
            else:
                print(status_line(self.snapshot()), file=self.out, flush=True)

    def _render(self) -> Group:
        from rich.console import Group
        from rich.text import Text

        lines = [Text(e) for e in self._events]
        return Group(*lines, Text(status_line(self.snapshot()), style="bold"))


__all__ = ["PLAIN_EVERY_S", "Second", "Status", "Timeline", "per_second", "status_line"]
