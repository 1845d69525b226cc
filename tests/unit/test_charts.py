"""The charts' content: threshold lines, the warm-up, a y-axis sized to the steady state."""

from __future__ import annotations

import math

import pytest
from matplotlib.patches import Polygon, Rectangle

from loadtests.harness import chart_style as style
from loadtests.harness.charts import Limit, latency_figure, limits_from, throughput_figure
from loadtests.harness.model import LoadSummary, TimelinePoint


def run(spike_ms: float = 200.0) -> LoadSummary:
    """60 s of a validate endpoint near 3 ms and a webhook near 20 ms, with a
    connection spike in the first second."""
    points = []
    for s in range(60):
        validate = spike_ms if s == 0 else 3.0 + (s % 5) * 0.2
        by_endpoint = {"validate": validate, "webhook": 20.0 + s % 3}
        points.append(TimelinePoint(s, 200, 2 * (s % 10 == 0), 2.0, 3.0, validate, by_endpoint))
    return LoadSummary(60.0, {}, points)


def test_a_first_second_spike_is_clipped_so_the_steady_state_shows() -> None:
    top = style.steady_top([3.0, 3.2, 3.4, 20.0, 21.0, 22.0, 200.0], [10.0])
    assert 13.0 <= top < 200.0  # the 200 ms spike does not set the scale
    assert style.steady_top([3.0, 3.5, 4.0], [10.0]) == pytest.approx(13.0)  # the line shows
    assert style.steady_top([3.0, 3.5, 4.0], []) == pytest.approx(4.4)  # no clipping needed
    assert style.steady_top([], []) == 1.0
    assert style.steady_top([math.nan], [5.0]) == pytest.approx(6.5)


def test_the_latency_chart_draws_each_endpoint_the_threshold_and_the_warm_up() -> None:
    fig = latency_figure(run(), warmup_s=10.0, limits=[Limit("validate p99 <= 10 ms", 10.0)])
    ax = fig.axes[0]
    labels = [line.get_label() for line in ax.get_lines()]
    assert "validate p99" in labels and "webhook p99" in labels
    dashed = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert [ln.get_ydata()[0] for ln in dashed] == [10.0]  # type: ignore[index]
    texts = [t.get_text() for t in ax.texts]
    assert "validate p99 <= 10 ms" in texts
    assert any(t.startswith("clipped: validate peak 200 at 0 s") for t in texts)
    bottom, top = ax.get_ylim()
    assert bottom == 0 and 22.0 < top < 200.0
    shaded = [p for p in ax.patches if isinstance(p, Rectangle | Polygon)]
    assert any(p.get_label() == "warm-up (not judged)" for p in shaded)


def test_without_a_spike_nothing_is_labelled_clipped() -> None:
    fig = latency_figure(run(spike_ms=3.0), limits=[Limit("x", 10.0)])
    assert not any(t.get_text().startswith("clipped") for t in fig.axes[0].texts)
    assert fig.axes[0].get_ylim()[1] == pytest.approx(22.0 * 1.1)


def test_an_old_timeline_without_endpoints_draws_the_overall_p99() -> None:
    old = LoadSummary(3.0, {}, [TimelinePoint(s, 10, 0, 1.0, 2.0, 3.0) for s in range(3)])
    labels = [line.get_label() for line in latency_figure(old).axes[0].get_lines()]
    assert labels == ["all p99"]


def test_throughput_stacks_failures_on_successes() -> None:
    ax = throughput_figure(run(), warmup_s=5.0).axes[0]
    stacked = [c.get_label() for c in ax.collections]
    assert stacked == ["succeeded/s", "failed/s"]
    assert ax.get_legend() is not None


def test_only_latency_thresholds_with_a_max_become_lines() -> None:
    limits = limits_from([("validate", "p99", 10.0), ("webhook", "p95", None)])
    assert limits == [Limit("validate p99 <= 10 ms", 10.0)]


def test_a_fast_endpoint_under_a_far_higher_line_gets_a_log_axis() -> None:
    limits = [Limit("validate p99 <= 10 ms", 10.0), Limit("webhook p99 <= 100 ms", 100.0)]
    ax = latency_figure(run(), warmup_s=10.0, limits=limits).axes[0]
    assert ax.get_yscale() == "log"
    bottom, top = ax.get_ylim()
    assert bottom < 3.0 and top == pytest.approx(130.0)
    linear = latency_figure(run(), warmup_s=10.0, limits=limits[:1]).axes[0]
    assert linear.get_yscale() == "linear"
