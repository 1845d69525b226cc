"""fixtures.progress: plain lines without a terminal, a live bar on one."""

from __future__ import annotations

import io

from fixtures.progress import Progress
from tests.ticks import Ticks


def test_without_a_terminal_it_prints_a_line_every_few_seconds_and_no_carriage_return() -> None:
    out, clock = io.StringIO(), Ticks(100.0)
    with Progress("sending", 1000, unit="deliveries", stream=out, every=5, clock=clock) as p:
        for done in range(0, 1001, 10):
            p.update(done, "ok")
            clock.now += 0.5  # 100 updates over 50 s
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    # The first update, one per 5 s after it, and the closing line.
    assert 10 <= len(lines) <= 12
    assert lines[0] == "sending: 0/1000 deliveries (0%), ok [0 s]"
    assert lines[-1] == "sending: 1000/1000 deliveries (100%), ok [50 s]"


def test_an_open_ended_task_shows_the_count_alone() -> None:
    out = io.StringIO()
    p = Progress("storm", None, unit="events", stream=out, clock=Ticks(100.0))
    p.update(42)
    p.close("done")
    p.close("twice")  # closing again prints nothing more
    assert out.getvalue().splitlines() == ["storm: 42 events [0 s]", "storm: 42 events, done [0 s]"]


def test_a_stream_without_isatty_counts_as_no_terminal() -> None:
    class Bare:
        def __init__(self) -> None:
            self.parts: list[str] = []

        def write(self, text: str) -> int:
            self.parts.append(text)
            return len(text)

        def flush(self) -> None:
            pass

    bare = Bare()
    with Progress("x", 2, stream=bare, clock=Ticks(100.0)) as p:  # type: ignore[arg-type]
        p.update(2)
    assert "".join(bare.parts).splitlines()[-1] == "x: 2/2 (100%) [0 s]"


def test_on_a_terminal_it_draws_a_rich_bar() -> None:
    out = io.StringIO()
    with Progress("gate", 40, unit="s", stream=out, live=True) as p:
        p.update(20, "load running")
    drawn = out.getvalue()
    assert "gate" in drawn and "load running" in drawn
    assert "━" in drawn  # rich's bar, not a plain line
