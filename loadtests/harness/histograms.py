"""Exact latency recording: HdrHistograms per request name, a per-second timeline, mergeable.

Locust's own percentiles come from response times rounded into coarse buckets, so its
p99 can exceed its (exact) max. Here every request goes into HdrHistograms instead:
values in microseconds, 1 us .. 60 s, 3 significant digits, where percentiles and max
come from the same buckets, so p99 <= max always holds and histograms add exactly.

Per request name there are three histograms: ``ok`` and ``failed`` service times (kept
apart: a fast 500 must not flatter the success latency) and ``corrected``, the latency
paced users measure from each iteration's *intended* start (coordinated omission). A
per-second timeline (run-relative seconds) counts requests and failures and keeps a
histogram of that second's successful latencies. ``encode``/``merge_encoded`` carry
them between processes. Pure: no Locust here (:mod:`.hdr` is the plugin).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hdrh.histogram import HdrHistogram

from loadtests.harness.model import EndpointSummary, LatencyStats, LoadSummary, TimelinePoint
from loadtests.harness.open_counter import DEFAULT_LATE_TOLERANCE_S, OpenModelCounter

LOWEST_US = 1
HIGHEST_US = 60_000_000  # 60 s: anything slower is recorded as 60 s, not dropped
DIGITS = 3
# The timeline keeps one histogram per second of the run, for the whole run. At 3 digits
# that is ~140 kB a second (500 MB an hour); at 2 digits ~20 kB (72 MB an hour), and a
# per-second chart does not need better than 1%.
TIMELINE_DIGITS = 2

ENCODING_VERSION = 1


def _histogram(digits: int = DIGITS) -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, digits)


def _to_us(ms: float) -> int:
    # Clamped, because HdrHistogram silently drops values outside its range.
    return min(max(round(ms * 1000.0), 0), HIGHEST_US)


def _encode(histogram: HdrHistogram | None) -> str | None:
    if histogram is None or histogram.get_total_count() == 0:
        return None
    encoded: bytes = histogram.encode()
    return encoded.decode("ascii")


def _add_encoded(
    histogram: HdrHistogram | None, encoded: str | None, digits: int
) -> HdrHistogram | None:
    """``histogram`` plus the encoded one (created if need be); unchanged if there is none."""
    if encoded is None:
        return histogram
    if histogram is None:
        histogram = _histogram(digits)
    histogram.decode_and_add(encoded.encode("ascii"))
    return histogram


def latency_stats(histogram: HdrHistogram | None) -> LatencyStats | None:
    """Milliseconds; None for an empty histogram. Percentiles use HDR's rank (rounded)."""
    if histogram is None:
        return None
    count = int(histogram.get_total_count())
    if count == 0:
        return None
    at = histogram.get_percentile_to_value_dict([50.0, 90.0, 95.0, 99.0, 99.9])
    return LatencyStats(
        count=count,
        mean=float(histogram.get_mean_value()) / 1000.0,
        p50=at[50.0] / 1000.0,
        p90=at[90.0] / 1000.0,
        p95=at[95.0] / 1000.0,
        p99=at[99.0] / 1000.0,
        p999=at[99.9] / 1000.0,
        max=histogram.get_max_value() / 1000.0,
    )


class _Endpoint:
    """One request name's histograms, created on first use (most names never fail)."""

    __slots__ = ("corrected", "failed", "ok")

    def __init__(self) -> None:
        self.ok: HdrHistogram | None = None
        self.failed: HdrHistogram | None = None
        self.corrected: HdrHistogram | None = None

    def encode(self) -> dict[str, str | None]:
        return {
            "ok": _encode(self.ok),
            "failed": _encode(self.failed),
            "corrected": _encode(self.corrected),
        }

    def merge_encoded(self, data: Mapping[str, str | None]) -> None:
        self.ok = _add_encoded(self.ok, data.get("ok"), DIGITS)
        self.failed = _add_encoded(self.failed, data.get("failed"), DIGITS)
        self.corrected = _add_encoded(self.corrected, data.get("corrected"), DIGITS)


class _Second:
    """One run-relative second of the timeline: counts and successful latencies
    over all request names, and each name's successful latencies (for the
    per-endpoint chart)."""

    __slots__ = ("by_name", "failures", "ok", "requests")

    def __init__(self) -> None:
        self.requests = 0
        self.failures = 0
        self.ok: HdrHistogram | None = None  # successful latencies only
        self.by_name: dict[str, HdrHistogram] = {}

    def record_ok(self, name: str, value: int) -> None:
        if self.ok is None:
            self.ok = _histogram(TIMELINE_DIGITS)
        self.ok.record_value(value)
        mine = self.by_name.get(name)
        if mine is None:
            mine = self.by_name[name] = _histogram(TIMELINE_DIGITS)
        mine.record_value(value)

    def encode(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "failures": self.failures,
            "ok": _encode(self.ok),
            "by_name": {name: _encode(h) for name, h in self.by_name.items()},
        }

    def merge_encoded(self, data: Mapping[str, Any]) -> None:
        self.requests += int(data["requests"])
        self.failures += int(data["failures"])
        self.ok = _add_encoded(self.ok, data.get("ok"), TIMELINE_DIGITS)
        for name, encoded in data.get("by_name", {}).items():
            merged = _add_encoded(self.by_name.get(name), encoded, TIMELINE_DIGITS)
            if merged is not None:
                self.by_name[name] = merged

    def point(self, second: int) -> TimelinePoint:
        at: dict[float, int] = {}
        if self.ok is not None and self.ok.get_total_count() > 0:
            at = self.ok.get_percentile_to_value_dict([50.0, 95.0, 99.0])

        def ms(percentile: float) -> float | None:
            return at[percentile] / 1000.0 if at else None

        return TimelinePoint(
            second=second,
            requests=self.requests,
            failures=self.failures,
            p50=ms(50.0),
            p95=ms(95.0),
            p99=ms(99.0),
            p99_by_endpoint={
                name: h.get_value_at_percentile(99.0) / 1000.0
                for name, h in sorted(self.by_name.items())
                if h.get_total_count() > 0
            },
        )


class EndpointHistograms:
    """Every request of a run (or of one process since its last report), by name.

    ``start`` is the run's start in unix seconds: a request completing at ``when`` counts
    in timeline second ``int(when - start)``. ``open_model`` accumulates paced users'
    iteration accounting and travels with the histograms.
    """

    def __init__(
        self,
        start: float = 0.0,
        *,
        late_tolerance_s: float = DEFAULT_LATE_TOLERANCE_S,
        warmup_s: float = 0.0,
    ) -> None:
        self.start = start
        # Successful requests completing in the first ``warmup_s`` seconds (users
        # spawning, connections opening, caches filling) show on the timeline but not
        # in the latency histograms; failures always count.
        self.warmup_s = warmup_s
        self.open_model = OpenModelCounter(late_tolerance_s)
        self._endpoints: dict[str, _Endpoint] = {}
        self._timeline: dict[int, _Second] = {}

    def _endpoint(self, name: str) -> _Endpoint:
        endpoint = self._endpoints.get(name)
        if endpoint is None:
            endpoint = self._endpoints[name] = _Endpoint()
        return endpoint

    def _second(self, second: int) -> _Second:
        bucket = self._timeline.get(second)
        if bucket is None:
            bucket = self._timeline[second] = _Second()
        return bucket

    def record(self, name: str, ms: float, ok: bool, when: float) -> None:
        """A request's service time; ``when`` is its completion in unix seconds."""
        endpoint = self._endpoint(name)
        # Clamped: only a skewed clock puts a completion before the start.
        bucket = self._second(max(int(when - self.start), 0))
        bucket.requests += 1
        value = _to_us(ms)
        if ok:
            if when - self.start >= self.warmup_s:
                if endpoint.ok is None:
                    endpoint.ok = _histogram()
                endpoint.ok.record_value(value)
            bucket.record_ok(name, value)
        else:
            if endpoint.failed is None:
                endpoint.failed = _histogram()
            endpoint.failed.record_value(value)
            bucket.failures += 1

    def record_corrected(self, name: str, ms: float) -> None:
        """A paced request's latency measured from its intended send time."""
        endpoint = self._endpoint(name)
        if endpoint.corrected is None:
            endpoint.corrected = _histogram()
        endpoint.corrected.record_value(_to_us(ms))

    def encode(self) -> dict[str, Any]:
        """Everything recorded, JSON-serialisable (histograms as base64 strings)."""
        return {
            "version": ENCODING_VERSION,
            "start": self.start,
            "endpoints": {name: ep.encode() for name, ep in self._endpoints.items()},
            "timeline": {str(second): b.encode() for second, b in self._timeline.items()},
            "open_model": self.open_model.encode(),
        }

    def merge_encoded(self, data: Mapping[str, Any]) -> None:
        """Add another process's ``encode()`` to this one: the sum is exact.

        Timeline seconds are shifted by the whole seconds between the two starts (none
        when, as in a Locust run, every process uses the master's start).
        """
        if data.get("version") != ENCODING_VERSION:
            raise ValueError(f"unknown histogram encoding version {data.get('version')!r}")
        for name, endpoint in data["endpoints"].items():
            self._endpoint(name).merge_encoded(endpoint)
        shift = round(float(data["start"]) - self.start)
        for second, bucket in data["timeline"].items():
            self._second(int(second) + shift).merge_encoded(bucket)
        self.open_model.merge_encoded(data["open_model"])

    def reset(self, start: float | None = None) -> None:
        """Forget everything recorded; keep ``start`` unless a new one is given."""
        if start is not None:
            self.start = start
        self._endpoints.clear()
        self._timeline.clear()
        self.open_model.reset()

    def names(self) -> list[str]:
        return sorted(self._endpoints)

    def summary(
        self,
        duration_s: float,
        tags: Mapping[str, tuple[str, ...]],
        *,
        aborted: str | None = None,
    ) -> LoadSummary:
        """The run as the gate sees it; names missing from ``tags`` get no tags.
        Throughput is measured over the time after the warm-up."""
        duration_s = max(duration_s - self.warmup_s, 0.0)
        endpoints = {
            name: self._endpoint_summary(name, duration_s, tuple(tags.get(name, ())))
            for name in self.names()
        }
        return LoadSummary(
            duration_s=duration_s,
            endpoints=endpoints,
            timeline=self._timeline_points(),
            open_model=self.open_model.stats(),
            aborted=aborted,
        )

    def _endpoint_summary(
        self, name: str, duration_s: float, tags: tuple[str, ...]
    ) -> EndpointSummary:
        endpoint = self._endpoints[name]
        ok, failed = latency_stats(endpoint.ok), latency_stats(endpoint.failed)
        failures = failed.count if failed else 0
        requests = (ok.count if ok else 0) + failures
        return EndpointSummary(
            name=name,
            tags=tags,
            ok=ok,
            failed=failed,
            corrected=latency_stats(endpoint.corrected),
            requests=requests,
            failures=failures,
            rps=requests / duration_s if duration_s > 0 else 0.0,
        )

    def _timeline_points(self) -> list[TimelinePoint]:
        # Gaps are filled with empty seconds: a stall must show on the chart as a dip.
        if not self._timeline:
            return []
        first, last = min(self._timeline), max(self._timeline)
        empty = _Second()
        return [self._timeline.get(s, empty).point(s) for s in range(first, last + 1)]
