"""The project's one chart look: figure size, colours, the threshold line, shaded
windows (warm-up, fault windows), and a y-axis sized to the steady state.

Every PNG the project draws (the gate's charts, the rehearsal reports) starts
from :func:`figure` and ends with :func:`finish`, so they read alike.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import ScalarFormatter

# matplotlib's default cycle, named so that a series keeps its colour across charts.
PALETTE: Final = (
    "tab:blue",
    "tab:orange",
    "tab:green",
    "tab:purple",
    "tab:brown",
    "tab:pink",
    "tab:olive",
    "tab:cyan",
)
FAILURE: Final = "tab:red"
FAULT_WINDOW: Final = "tab:purple"
WARMUP_COLOR: Final = "0.85"
THRESHOLD_LINE: Final[dict[str, Any]] = {
    "color": "black",
    "linestyle": "--",
    "linewidth": 1.0,
}
# A spike above this many times the steady state's 90th percentile is clipped.
SPIKE_FACTOR: Final = 2.0
# A y-axis spanning more than this factor is drawn logarithmic.
LOG_SPAN: Final = 20.0
# Room above the highest threshold line, so it never sits on the frame.
LIMIT_HEADROOM: Final = 1.3


def figure(height: float = 4.0) -> tuple[Figure, Axes]:
    # A bare Figure with its own Agg canvas: no pyplot, no process-wide backend switch,
    # nothing kept alive after the file is written; works without a display.
    fig = Figure(figsize=(10, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def figure_rows(height: float, ratios: Sequence[float]) -> tuple[Figure, list[Axes]]:
    """Several panels over one shared time axis (a rehearsal: latency, errors, breaker)."""
    fig = Figure(figsize=(10, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(ratios), 1, sharex=True, gridspec_kw={"height_ratios": list(ratios)})
    return fig, list(axes)


def color(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def steady_top(steady: Sequence[float], limits: Sequence[float]) -> float:
    """The y-axis top: the steady state's 90th percentile with room for its
    variation, never below a threshold line (with headroom), never above the
    data's own maximum when nothing needs clipping."""
    values = sorted(v for v in steady if not math.isnan(v))
    floor = max(limits, default=0.0) * LIMIT_HEADROOM
    if not values:
        return max(floor, 1.0)
    p90 = values[int(0.9 * (len(values) - 1))]
    top = max(p90 * SPIKE_FACTOR, floor)
    if values[-1] <= top:
        top = max(values[-1] * 1.1, floor)
    return max(top, 1e-3)


def scale_y(ax: Axes, steady: Sequence[float], top: float) -> None:
    """Linear from 0, unless the series (or the threshold lines) span more than
    :data:`LOG_SPAN` (a 3 ms validation under a 100 ms webhook line): then
    logarithmic, so the fast endpoint's steady state is not a flat line at 0."""
    values = sorted(v for v in steady if v > 0 and not math.isnan(v))
    low = values[int(0.1 * (len(values) - 1))] if values else top
    if top / low > LOG_SPAN:
        ax.set_yscale("log")
        ax.set_ylim(low / 2, top)
        ax.yaxis.set_major_formatter(ScalarFormatter())  # 10 and 100, not 10^1 and 10^2
    else:
        ax.set_ylim(0, top)


def clipped_line(
    ax: Axes,
    x: Sequence[float],
    values: Sequence[float],
    top: float,
    *,
    label: str,
    color: str,
) -> None:
    """A line whose points above ``top`` are drawn at ``top`` with a marker."""
    shown = [min(v, top) for v in values]
    ax.plot(x, shown, label=label, color=color, linewidth=1.4)
    above = [(xi, top) for xi, v in zip(x, values, strict=True) if v > top]
    if above:
        ax.plot(
            [p[0] for p in above],
            [p[1] for p in above],
            linestyle="none",
            marker="^",
            color=color,
            clip_on=False,
        )


def label_clipped_peak(
    ax: Axes, x: Sequence[float], series: Mapping[str, Sequence[float]], top: float
) -> None:
    """Write the highest clipped value beside its marker, so nothing is hidden."""
    peaks = [
        (v, xi, name)
        for name, values in series.items()
        for xi, v in zip(x, values, strict=True)
        if v > top
    ]
    if not peaks:
        return
    value, at, name = max(peaks)
    ax.annotate(
        f"clipped: {name} peak {value:.0f} at {at:g} s",
        (at, top),
        xytext=(6, -12),
        textcoords="offset points",
        fontsize=8,
    )


def shade_warmup(ax: Axes, warmup_s: float) -> None:
    if warmup_s > 0:
        ax.axvspan(
            0, warmup_s, color=WARMUP_COLOR, alpha=0.6, zorder=0, label="warm-up (not judged)"
        )


def shade_window(
    ax: Axes, start: float, end: float, label: str | None, color: str = FAULT_WINDOW
) -> None:
    """A fault window (or any interval worth seeing) behind the data."""
    ax.axvspan(start, end, color=color, alpha=0.12, zorder=0, label=label)


def finish(ax: Axes, title: str, ylabel: str, xlabel: str | None = "seconds since start") -> None:
    ax.set_title(title)
    if xlabel is not None:
        ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        # Outside the plot: with several endpoints a legend inside hides the data.
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    del labels


def no_data(ax: Axes, what: str) -> None:
    ax.set_axis_off()
    ax.text(0.5, 0.5, f"{what}: no data (the run recorded no timeline)", ha="center", va="center")
