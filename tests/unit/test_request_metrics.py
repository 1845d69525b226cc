"""The hand-counted request metrics render as Prometheus expects."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from licensing_service.api.metrics import LATENCY_BUCKETS, _RequestCollector


def scrape(collector: _RequestCollector) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_counts_per_route_method_and_status() -> None:
    c = _RequestCollector()
    for status in (200, 200, 200, 401):
        c.observe("/validate-unified", "POST", status, 0.002)
    c.observe("/health", "GET", 200, 0.001)
    samples = scrape(c)

    def count(method: str, route: str, status: str) -> float:
        labels = (("method", method), ("route", route), ("status", status))
        return samples[("licensing_http_requests_total", labels)]

    assert count("POST", "/validate-unified", "200") == 3
    assert count("POST", "/validate-unified", "401") == 1
    assert count("GET", "/health", "200") == 1


def test_latency_buckets_are_cumulative_and_inclusive_upper_bounds() -> None:
    c = _RequestCollector()
    # One exactly on the first bound, one just above it, one beyond every bound.
    for seconds in (LATENCY_BUCKETS[0], LATENCY_BUCKETS[0] * 1.01, 100.0):
        c.observe("/validate-unified", "POST", 200, seconds)
    samples = scrape(c)
    name = "licensing_http_request_duration_seconds"

    def bucket(le: str) -> float:
        return samples[(f"{name}_bucket", (("le", le), ("route", "/validate-unified")))]

    assert bucket("0.0005") == 1
    assert bucket("0.001") == 2
    assert bucket("2.5") == 2
    assert bucket("+Inf") == 3
    assert samples[(f"{name}_count", (("route", "/validate-unified"),))] == 3
    total = samples[(f"{name}_sum", (("route", "/validate-unified"),))]
    assert abs(total - (0.0005 + 0.000505 + 100.0)) < 1e-9
