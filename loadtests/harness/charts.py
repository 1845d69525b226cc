"""The gate report's PNG charts: latency percentiles and throughput, second by second.

Drawn on a bare matplotlib ``Figure`` from the run's timeline (``model.TimelinePoint``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from loadtests.harness.model import LoadSummary, TimelinePoint

LATENCY_CHART = "latency.png"
THROUGHPUT_CHART = "throughput.png"


def write_charts(directory: Path, summary: LoadSummary | None) -> list[Path]:
    """``latency.png`` and ``throughput.png`` in ``directory``; with no timeline, each
    says "no data" so the report's links still resolve. Returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    timeline = summary.timeline if summary is not None else []
    aborted = summary.aborted if summary is not None else None
    charts = ((LATENCY_CHART, _draw_latency), (THROUGHPUT_CHART, _draw_throughput))
    paths = []
    for filename, draw in charts:
        fig, ax = _figure()
        if timeline:
            draw(ax, timeline)
            if aborted is not None:
                ax.set_title(f"{ax.get_title()} (stopped early)")
        else:
            _no_data(ax, "latency" if filename == LATENCY_CHART else "throughput")
        path = directory / filename
        fig.savefig(path, format="png")
        paths.append(path)
    return paths


def _figure() -> tuple[Figure, Axes]:
    # A bare Figure with its own Agg canvas: no pyplot, no process-wide backend switch,
    # nothing kept alive after the file is written; works without a display.
    fig = Figure(figsize=(10, 4), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _draw_latency(ax: Axes, timeline: Sequence[TimelinePoint]) -> None:
    seconds = [p.second for p in timeline]
    for label, values in (
        ("p50", [p.p50 for p in timeline]),
        ("p95", [p.p95 for p in timeline]),
        ("p99", [p.p99 for p in timeline]),
    ):
        # None (a second with no successes) becomes NaN: a gap, not a drop to zero.
        ax.plot(seconds, [math.nan if v is None else v for v in values], label=label)
    ax.set_title("latency, successful requests")
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("ms")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")


def _draw_throughput(ax: Axes, timeline: Sequence[TimelinePoint]) -> None:
    seconds = [p.second for p in timeline]
    ax.plot(seconds, [p.requests for p in timeline], label="requests/s")
    ax.plot(seconds, [p.failures for p in timeline], label="failures/s", color="tab:red")
    ax.set_title("throughput")
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("per second")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")


def _no_data(ax: Axes, what: str) -> None:
    ax.set_axis_off()
    ax.text(0.5, 0.5, f"{what}: no data (the run recorded no timeline)", ha="center", va="center")


__all__ = ["LATENCY_CHART", "THROUGHPUT_CHART", "write_charts"]
