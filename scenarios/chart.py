"""A rehearsal's chart: latency (p50, p99 per second) and error rate, the fault
windows shaded, the breaker's state drawn as a band beneath.

In the project's one chart look (:mod:`loadtests.harness.chart_style`, which the
gate's charts use too): the latency axis is sized to the steady state, a spike
above it clipped and labelled, and legends sit outside the data.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.patches import Patch

from loadtests.harness import chart_style as style
from scenarios.recording import Recording, percentile
from scenarios.timeline import per_second

BREAKER_COLOURS = {
    "CLOSED": "tab:green",
    "HALF_OPEN": "tab:orange",
    "OPEN": "tab:red",
    "unreachable": "tab:gray",
}


def write_chart(path: Path, name: str, rec: Recording) -> Path:
    fig, (latency, errors, band) = style.figure_rows(6, (3, 2, 0.5))
    if rec.answers:
        _latency(latency, rec)
        _errors(errors, rec)
    else:
        latency.text(0.5, 0.5, "no requests recorded", ha="center", va="center")
    for ax in (latency, errors, band):
        _shade_faults(ax, rec, labelled=ax is latency)
    style.finish(latency, f"{name}: latency, every request", "ms", xlabel=None)
    style.finish(errors, "error and degraded rates", "% of requests", xlabel=None)
    _breaker_band(band, rec)
    fig.savefig(path, format="png")
    return path


def _latency(ax: Axes, rec: Recording) -> None:
    by_second: dict[int, list[float]] = defaultdict(list)
    for a in rec.answers:
        by_second[int(a.t)].append(a.latency_ms)
    seconds = list(range(int(rec.end) + 1))
    series: dict[str, list[float]] = {}
    for label, q in (("p50", 50), ("p99", 99)):
        at = [percentile(by_second.get(s, []), q) for s in seconds]
        series[label] = [math.nan if v is None else v for v in at]
    steady = [v for values in series.values() for v in values if not math.isnan(v)]
    top = style.steady_top(steady, [])
    for index, (label, values) in enumerate(series.items()):
        style.clipped_line(ax, seconds, values, top, label=label, color=style.color(index))
    style.label_clipped_peak(ax, seconds, series, top)
    ax.set_ylim(0, top)


def _errors(ax: Axes, rec: Recording) -> None:
    rows = per_second(rec.answers)
    seconds = [r.second for r in rows]
    ax.plot(
        seconds,
        [100 * r.errors / r.requests if r.requests else math.nan for r in rows],
        label="errors (5xx or no answer) %",
        color=style.FAILURE,
    )
    ax.plot(
        seconds,
        [100 * r.degraded / r.requests if r.requests else math.nan for r in rows],
        label="degraded answers %",
        color=style.color(0),
        alpha=0.6,
    )
    ax.set_ylim(0, 105)


def _shade_faults(ax: Axes, rec: Recording, *, labelled: bool) -> None:
    for index, w in enumerate(rec.faults):
        end = w.end if w.end is not None else rec.end
        label = "fault window" if labelled and index == 0 else None
        style.shade_window(ax, w.start, end, label)


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
        ax.legend(
            handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False
        )
    ax.set_xlim(0, max(rec.end, 1.0))


__all__ = ["write_chart"]
