"""The live timeline: plain lines without a TTY (no carriage returns), the live
display on one, and the per-second figures it shows."""

from __future__ import annotations

import io
import time

import pytest

from scenarios import timeline
from scenarios.timeline import Status, Timeline, per_second, status_line
from tests.scenarios.planted import answer


def snapshot() -> Status:
    answers = [answer(0.2), answer(0.5, status=503, valid=None), answer(0.7, degraded=True)]
    return Status(1.0, "method 2: wait 2s", ["db.errors"], "OPEN", answers)


def test_the_status_line_says_faults_breaker_and_rates() -> None:
    line = status_line(snapshot())
    assert line.startswith("[   1.0s] method 2: wait 2s | faults db.errors | breaker OPEN")
    assert "3 req/s, 33.3% errors, 33% degraded" in line


def test_per_second_counts_errors_and_degraded() -> None:
    rows = per_second(snapshot().answers)
    assert [(r.second, r.requests, r.errors, r.degraded) for r in rows] == [(0, 3, 1, 1)]


def test_without_a_tty_plain_lines_every_few_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(timeline, "PLAIN_EVERY_S", 0.05)
    out = io.StringIO()
    with Timeline(snapshot, out, live=False) as tl:
        tl.event(0.5, "faults: db.errors")
        time.sleep(0.3)
    text = out.getvalue()
    assert "\r" not in text and "\x1b" not in text  # no carriage return, no cursor codes
    lines = text.splitlines()
    assert "[   0.5s] faults: db.errors" in lines
    assert sum(1 for line in lines if "| breaker OPEN |" in line) >= 3


def test_on_a_tty_a_live_display() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Tty()
    with Timeline(snapshot, out) as tl:
        assert tl.live
        tl.event(0.5, "breaker OPEN (failures 5)")
        time.sleep(0.3)
    assert "breaker OPEN (failures 5)" in out.getvalue()
