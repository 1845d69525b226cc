"""Exact latency recording: percentiles to 3 significant digits, and exact merging."""

import json
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loadtests.harness.hdr import write_summary
from loadtests.harness.histograms import HIGHEST_US, EndpointHistograms
from loadtests.harness.model import LatencyStats, LoadSummary, TimelinePoint

START = 1_700_000_000.0
PERCENTILES = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "p999": 99.9}


def ranked(values_us: list[int], percentile: float) -> int:
    """The value at HDR's rank for ``percentile``: count * p / 100, rounded, at least 1."""
    ordered = sorted(values_us)
    rank = max(int(percentile * len(ordered) / 100 + 0.5), 1)
    return ordered[rank - 1]


def within_3_digits(measured_ms: float, true_us: int) -> bool:
    true_ms = true_us / 1000
    # HDR reports the top of the value's bucket: never below it, at most 0.1% above.
    return true_ms <= measured_ms + 1e-9 and measured_ms <= true_ms * 1.001 + 0.001


def latencies(rng: random.Random, n: int) -> list[int]:
    """Microseconds, log-normal around 5 ms with a long tail up to seconds."""
    return [min(max(int(rng.lognormvariate(8.5, 1.5)), 1), HIGHEST_US) for _ in range(n)]


def stats(h: EndpointHistograms, name: str) -> LatencyStats:
    endpoint = h.summary(1.0, {}).endpoints[name]
    assert endpoint.ok is not None
    return endpoint.ok


@pytest.mark.parametrize(("seed", "n"), [(1, 1), (2, 7), (3, 1000), (4, 20_000)])
def test_percentiles_are_exact_to_3_significant_digits(seed: int, n: int) -> None:
    values = latencies(random.Random(seed), n)
    h = EndpointHistograms(START)
    for us in values:
        h.record("validate", us / 1000, ok=True, when=START)

    got = stats(h, "validate")

    assert got.count == n
    for field, percentile in PERCENTILES.items():
        assert within_3_digits(getattr(got, field), ranked(values, percentile)), field
    assert within_3_digits(got.max, max(values))
    assert got.mean == pytest.approx(sum(values) / n / 1000, rel=1e-3)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=60_000), min_size=1, max_size=300))
def test_p99_never_exceeds_max(values_ms: list[float]) -> None:
    h = EndpointHistograms(START)
    for ms in values_ms:
        h.record("x", ms, ok=True, when=START)
    got = stats(h, "x")
    assert got.p50 <= got.p90 <= got.p95 <= got.p99 <= got.p999 <= got.max
    assert got.max >= max(values_ms) - 0.0005  # never below the true max (us rounding)


def test_a_single_slow_value_is_its_own_p99_and_max() -> None:
    # Locust rounds 147 ms to 150 in its percentile buckets but reports the exact max,
    # so its p99 (150) exceeds its max (147). Here both come from the same bucket.
    h = EndpointHistograms(START)
    for _ in range(100):
        h.record("x", 147.0, ok=True, when=START)
    got = stats(h, "x")
    assert got.p99 == got.max == got.p50
    assert 147.0 <= got.max <= 147.0 * 1.001


def test_successes_and_failures_are_kept_apart() -> None:
    h = EndpointHistograms(START)
    for _ in range(3):
        h.record("validate", 10.0, ok=True, when=START + 0.5)
    h.record("validate", 500.0, ok=False, when=START + 0.6)
    h.record("validate", 2.0, ok=False, when=START + 1.2)

    endpoint = h.summary(2.0, {"validate": ("licensing",)}).endpoints["validate"]

    assert endpoint.ok is not None and endpoint.failed is not None
    assert (endpoint.ok.count, endpoint.ok.max) == (3, pytest.approx(10.0, rel=1e-3))
    assert (endpoint.failed.count, endpoint.failed.max) == (2, pytest.approx(500, rel=1e-3))
    assert endpoint.failed.p50 == pytest.approx(2.0, rel=1e-3)
    assert (endpoint.requests, endpoint.failures, endpoint.rps) == (5, 2, 2.5)
    assert endpoint.error_rate == pytest.approx(0.4)
    assert endpoint.corrected is None
    assert endpoint.tags == ("licensing",)


def test_timeline_counts_by_run_second_and_times_successes_only() -> None:
    h = EndpointHistograms(START)
    h.record("a", 4.0, ok=True, when=START + 0.2)
    h.record("b", 900.0, ok=False, when=START + 0.9)  # a failure's latency is not timed
    h.record("a", 8.0, ok=True, when=START + 3.99)
    h.record("b", 1.0, ok=False, when=START + 3.0)

    timeline = h.summary(4.0, {}).timeline

    assert [p.second for p in timeline] == [0, 1, 2, 3]
    assert timeline[0].requests == 2 and timeline[0].failures == 1
    assert timeline[0].p99 == pytest.approx(4.0, rel=0.01)  # the timeline keeps 2 digits
    # A second with nothing in it is on the chart as an empty second, not left out.
    assert timeline[1] == TimelinePoint(1, requests=0, failures=0, p50=None, p95=None, p99=None)
    assert (timeline[3].requests, timeline[3].failures) == (2, 1)
    assert timeline[3].p50 == pytest.approx(8.0, rel=0.01)


def test_corrected_latency_has_its_own_histogram() -> None:
    h = EndpointHistograms(START)
    h.record("validate open", 3.0, ok=True, when=START)
    h.record_corrected("validate open", 250.0)
    h.record_corrected("iteration only", 40.0)

    endpoints = h.summary(1.0, {}).endpoints

    corrected = endpoints["validate open"].corrected
    assert corrected is not None and corrected.p99 == pytest.approx(250.0, rel=1e-3)
    # A name that only has corrected latencies (a multi-request iteration) has no requests.
    assert endpoints["iteration only"].requests == 0
    assert endpoints["iteration only"].ok is None


def test_out_of_range_values_are_clamped_not_dropped() -> None:
    h = EndpointHistograms(START)
    h.record("x", 120_000.0, ok=True, when=START)  # 2 minutes: over the 60 s range
    h.record("x", -1.0, ok=True, when=START)  # a clock step backwards
    got = stats(h, "x")
    assert got.count == 2
    assert got.max == pytest.approx(60_000.0, rel=1e-3)


def record_random(hists: list[EndpointHistograms], rng: random.Random, n: int) -> None:
    """The same random requests spread over ``hists`` (the last one gets all of them)."""
    names = ["validate", "session heartbeat", "webhook"]
    for _ in range(n):
        name = rng.choice(names)
        ms = rng.lognormvariate(1.5, 1.2)
        ok = rng.random() > 0.1
        when = START + rng.uniform(0, 12)
        worker = rng.randrange(len(hists) - 1)
        for h in (hists[worker], hists[-1]):
            h.record(name, ms, ok, when)
        if rng.random() < 0.2:
            for h in (hists[worker], hists[-1]):
                h.record_corrected(name, ms * 3)
        if rng.random() < 0.1:
            started = when + rng.choice([0, 0.5])
            for h in (hists[worker], hists[-1]):
                h.open_model.record_start(when, started)


def test_merged_workers_equal_one_histogram_of_everything() -> None:
    rng = random.Random(7)
    workers = [EndpointHistograms(START) for _ in range(3)]
    everything = EndpointHistograms(START)
    master = EndpointHistograms(START)
    for index, worker in enumerate(workers):
        for h in (worker, everything):
            h.open_model.add_rate(f"user-{index}", 10.0)

    # Delta reporting: each worker sends what it has every few seconds and starts over.
    for _ in range(4):
        record_random([*workers, everything], rng, 2_000)
        for worker in workers:
            master.merge_encoded(json.loads(json.dumps(worker.encode())))
            worker.reset()

    merged, single = master.summary(12.0, {}), everything.summary(12.0, {})
    assert merged == single
    assert sum(p.requests for p in merged.timeline) == 8_000
    assert merged.open_model == single.open_model
    assert merged.open_model is not None and merged.open_model.target_rate == 30.0
    assert {ep.corrected is not None for ep in merged.endpoints.values()} == {True}


def test_merging_shifts_the_timeline_by_whole_seconds_between_starts() -> None:
    master, late_starter = EndpointHistograms(START), EndpointHistograms(START + 2)
    late_starter.record("x", 1.0, ok=True, when=START + 2.5)  # its second 0 is the run's 2
    master.merge_encoded(late_starter.encode())
    assert [(p.second, p.requests) for p in master.summary(3.0, {}).timeline] == [(2, 1)]


def test_reset_forgets_everything_but_the_start() -> None:
    h = EndpointHistograms(START)
    h.record("x", 1.0, ok=True, when=START)
    h.open_model.add_rate("u", 5.0)
    h.reset()
    assert h.start == START
    assert h.summary(1.0, {}) == LoadSummary(duration_s=1.0, endpoints={})
    h.reset(start=START + 60)
    assert h.start == START + 60


def test_an_unknown_encoding_is_refused() -> None:
    data = EndpointHistograms(START).encode()
    data["version"] = 99
    with pytest.raises(ValueError, match="version"):
        EndpointHistograms(START).merge_encoded(data)


def test_summary_round_trips_through_json(tmp_path: Path) -> None:
    h = EndpointHistograms(START)
    record_random([EndpointHistograms(START), h], random.Random(3), 500)
    h.open_model.add_rate("u", 12.5)
    h.open_model.record_dropped()
    summary = h.summary(12.0, {"validate": ("licensing", "validation")}, aborted="p99 over")

    path = tmp_path / "out" / "summary.json"
    write_summary(summary, str(path))
    loaded = LoadSummary.from_dict(json.loads(path.read_text()))

    assert loaded == summary
    assert loaded.endpoints["validate"].tags == ("licensing", "validation")
    assert loaded.open_model is not None
    assert (loaded.open_model.target_rate, loaded.open_model.dropped) == (12.5, 1)
    assert loaded.aborted == "p99 over"
    assert [p.name for p in tmp_path.joinpath("out").iterdir()] == ["summary.json"]


def test_a_completion_before_the_start_counts_in_the_first_second() -> None:
    h = EndpointHistograms(START)
    h.record("x", 1.0, ok=True, when=START - 5)  # another machine's clock, a little behind
    assert [(p.second, p.requests) for p in h.summary(1.0, {}).timeline] == [(0, 1)]


def test_the_timeline_keeps_each_endpoint_p99_and_merges_it_across_processes() -> None:
    one, two = EndpointHistograms(START), EndpointHistograms(START)
    for i in range(100):
        one.record("validate", 2.0 + (i == 99) * 40.0, ok=True, when=START + 0.5)
        two.record("webhook", 30.0, ok=True, when=START + 0.5)
    two.record("webhook", 500.0, ok=False, when=START + 0.6)  # failures are not timed
    two.record("webhook", 9.0, ok=True, when=START + 1.5)
    merged = EndpointHistograms(START)
    merged.merge_encoded(json.loads(json.dumps(one.encode())))
    merged.merge_encoded(json.loads(json.dumps(two.encode())))

    first, second = merged.summary(2.0, {}).timeline

    assert first.p99_by_endpoint.keys() == {"validate", "webhook"}
    assert first.p99_by_endpoint["validate"] == pytest.approx(2.0, rel=0.01)
    assert first.p99_by_endpoint["webhook"] == pytest.approx(30.0, rel=0.01)
    assert second.p99_by_endpoint == {"webhook": pytest.approx(9.0, rel=0.01)}
    # The summary's round trip keeps them.
    again = LoadSummary.from_dict(json.loads(json.dumps(merged.summary(2.0, {}).to_dict())))
    assert again.timeline[0].p99_by_endpoint == first.p99_by_endpoint
