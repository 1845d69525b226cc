"""The gate report's PNG charts: latency by endpoint and throughput, second by second.

Drawn on bare matplotlib ``Figure``s from the run's timeline (``model.TimelinePoint``),
in the project's one chart look (:mod:`.chart_style`), which the rehearsal
reports use too. The latency chart draws each endpoint's p99 per second, the
gate's latency thresholds as lines and the warm-up shaded; its y-axis is sized
to the steady state, and a spike above it (connections opening in the first
second) is clipped and labelled rather than allowed to flatten the rest.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from matplotlib.figure import Figure

from loadtests.harness import chart_style as style
from loadtests.harness.model import LoadSummary, TimelinePoint

LATENCY_CHART = "latency.png"
THROUGHPUT_CHART = "throughput.png"


@dataclass(frozen=True, slots=True)
class Limit:
    """A latency threshold drawn as a horizontal line."""

    label: str  # "validate p99 <= 10 ms"
    ms: float


def write_charts(
    directory: Path,
    summary: LoadSummary | None,
    *,
    warmup_s: float = 0.0,
    limits: Sequence[Limit] = (),
) -> list[Path]:
    """``latency.png`` and ``throughput.png`` in ``directory``; with no timeline, each
    says "no data" so the report's links still resolve. Returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    figures = (
        (LATENCY_CHART, latency_figure(summary, warmup_s=warmup_s, limits=limits)),
        (THROUGHPUT_CHART, throughput_figure(summary, warmup_s=warmup_s)),
    )
    paths = []
    for filename, fig in figures:
        path = directory / filename
        fig.savefig(path, format="png")
        paths.append(path)
    return paths


def latency_figure(
    summary: LoadSummary | None, *, warmup_s: float = 0.0, limits: Sequence[Limit] = ()
) -> Figure:
    fig, ax = style.figure()
    timeline = summary.timeline if summary is not None else []
    if not timeline:
        style.no_data(ax, "latency")
        return fig
    seconds = [p.second for p in timeline]
    series = _p99_by_endpoint(timeline)
    steady = [
        v
        for values in series.values()
        for s, v in zip(seconds, values, strict=True)
        if s >= warmup_s and not math.isnan(v)
    ]
    top = style.steady_top(steady, [limit.ms for limit in limits])
    for index, (name, values) in enumerate(series.items()):
        style.clipped_line(ax, seconds, values, top, label=f"{name} p99", color=style.color(index))
    for limit in limits:
        ax.axhline(limit.ms, **style.THRESHOLD_LINE)
        ax.annotate(
            limit.label,
            (1.0, limit.ms),
            xycoords=("axes fraction", "data"),
            ha="right",
            va="bottom",
            fontsize=8,
            color=style.THRESHOLD_LINE["color"],
        )
    style.shade_warmup(ax, warmup_s)
    style.label_clipped_peak(ax, seconds, series, top)
    style.scale_y(ax, steady, top)
    style.finish(ax, _title("latency by endpoint (p99 per second)", summary), "ms")
    return fig


def throughput_figure(summary: LoadSummary | None, *, warmup_s: float = 0.0) -> Figure:
    fig, ax = style.figure()
    timeline = summary.timeline if summary is not None else []
    if not timeline:
        style.no_data(ax, "throughput")
        return fig
    seconds = [p.second for p in timeline]
    ok = [p.requests - p.failures for p in timeline]
    failed = [p.failures for p in timeline]
    ax.stackplot(
        seconds,
        ok,
        failed,
        labels=["succeeded/s", "failed/s"],
        colors=[style.color(0), style.FAILURE],
        alpha=0.85,
        step="mid",
    )
    style.shade_warmup(ax, warmup_s)
    ax.set_ylim(bottom=0)
    style.finish(ax, _title("throughput (failures stacked on top)", summary), "requests/s")
    return fig


def limits_from(thresholds: Sequence[tuple[str, str, float | None]]) -> list[Limit]:
    """``(select, metric, max)`` of the latency thresholds, as lines to draw."""
    return [
        Limit(f"{select} {metric} <= {high:g} ms", high)
        for select, metric, high in thresholds
        if high is not None
    ]


def _p99_by_endpoint(timeline: Sequence[TimelinePoint]) -> dict[str, list[float]]:
    """Each endpoint's p99 per second, NaN (a gap, not a drop to zero) where it
    had no success that second. A timeline recorded before per-endpoint
    latencies existed falls back to the overall p99."""
    names = sorted({name for p in timeline for name in p.p99_by_endpoint})
    if not names:
        return {"all": [math.nan if p.p99 is None else p.p99 for p in timeline]}
    return {name: [p.p99_by_endpoint.get(name, math.nan) for p in timeline] for name in names}


def _title(title: str, summary: LoadSummary | None) -> str:
    if summary is not None and summary.aborted is not None:
        return f"{title} (stopped early)"
    return title


__all__ = [
    "LATENCY_CHART",
    "THROUGHPUT_CHART",
    "Limit",
    "latency_figure",
    "limits_from",
    "throughput_figure",
    "write_charts",
]
