"""A rehearsal's chart: latency (p50, p99 per second) and error rate, the fault
windows shaded, the breaker's state drawn as a band beneath.

The look of the gate's charts (:mod:`loadtests.harness.charts`): a bare
matplotlib ``Figure`` on its own Agg canvas, no pyplot, no display needed.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from scenarios.recording import Recording, percentile
from scenarios.timeline import per_second

BREAKER_COLOURS = {
    "CLOSED": "tab:green",
    "HALF_OPEN": "tab:orange",
    "OPEN": "tab:red",
    "unreachable": "tab:gray",
}
FAULT_COLOUR = "tab:purple"


def write_chart(path: Path, name: str, rec: Recording) -> Path:
    fig = Figure(figsize=(10, 6), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    latency, errors, band = fig.subplots(
        3, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2, 0.5]}
    )
    if rec.answers:
        _latency(latency, rec)
        _errors(errors, rec)
    else:
        latency.text(0.5, 0.5, "no requests recorded", ha="center", va="center")
    for ax in (latency, errors, band):
        _shade_faults(ax, rec)
    _breaker_band(band, rec)
    latency.set_title(f"{name}: latency, every request")
    fig.savefig(path, format="png")
    return path


def _latency(ax: Axes, rec: Recording) -> None:
    by_second: dict[int, list[float]] = defaultdict(list)
    for a in rec.answers:
        by_second[int(a.t)].append(a.latency_ms)
    seconds = list(range(int(rec.end) + 1))
    for label, q in (("p50", 50), ("p99", 99)):
        values = [percentile(by_second.get(s, []), q) for s in seconds]
        ax.plot(seconds, [math.nan if v is None else v for v in values], label=label)
    ax.set_ylabel("ms")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(handles=[*ax.get_legend_handles_labels()[0], _fault_patch()], loc="upper left")


def _errors(ax: Axes, rec: Recording) -> None:
    rows = per_second(rec.answers)
    seconds = [r.second for r in rows]
    ax.plot(
        seconds,
        [100 * r.errors / r.requests if r.requests else math.nan for r in rows],
        label="errors (5xx or no answer) %",
        color="tab:red",
    )
    ax.plot(
        seconds,
        [100 * r.degraded / r.requests if r.requests else math.nan for r in rows],
        label="degraded answers %",
        color="tab:blue",
        alpha=0.6,
    )
    ax.set_title("error rate", fontsize="medium")
    ax.set_ylabel("% of requests")
    ax.set_ylim(0, 105)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")


def _shade_faults(ax: Axes, rec: Recording) -> None:
    for w in rec.faults:
        end = w.end if w.end is not None else rec.end
        ax.axvspan(w.start, end, color=FAULT_COLOUR, alpha=0.12, linewidth=0)


def _fault_patch() -> Patch:
    return Patch(color=FAULT_COLOUR, alpha=0.25, label="fault window")


def _breaker_band(ax: Axes, rec: Recording) -> None:
    samples = rec.breaker
    for here, nxt in itertools.pairwise(samples):
        ax.axvspan(here.t, nxt.t, color=BREAKER_COLOURS.get(here.state, "white"), linewidth=0)
    ax.set_yticks([])
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("breaker", rotation=0, ha="right", va="center")
    seen = [state for state in BREAKER_COLOURS if any(s.state == state for s in samples)]
    if seen:
        handles = [Patch(color=BREAKER_COLOURS[s], label=s) for s in seen]
        ax.legend(handles=handles, loc="upper left", ncols=len(handles), fontsize="small")
    ax.set_xlim(0, max(rec.end, 1.0))


__all__ = ["write_chart"]
