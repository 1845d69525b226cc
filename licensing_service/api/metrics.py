"""Prometheus metrics, on a registry per application (nothing global)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from licensing_service.domain.breaker import BreakerState
from licensing_service.service.errors import StorageUnavailable
from licensing_service.service.licensing import LicensingService
from licensing_service.service.ports import Clock

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    def __init__(self, service: LicensingService, clock: Clock) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._requests = Counter(
            "licensing_http_requests",
            "HTTP requests answered, by route, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "licensing_http_request_duration_seconds",
            "Time from request to response, by route.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_StateCollector(service, clock))
        # Label lookups take a lock; the hot path reuses the children.
        self._children: dict[tuple[str, str, int], tuple[Callable[[], None], Histogram]] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        child = self._children.get(key)
        if child is None:
            counter = self._requests.labels(route, method, str(status))
            child = (counter.inc, self._latency.labels(route))
            self._children[key] = child
        child[0]()
        child[1].observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _StateCollector(Collector):
    def __init__(self, service: LicensingService, clock: Clock) -> None:
        self._service = service
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        service = self._service
        breaker = GaugeMetricFamily(
            "licensing_circuit_breaker_state",
            "1 for the breaker's current state.",
            labels=["state"],
        )
        for state in BreakerState:
            breaker.add_metric([state.value], 1.0 if service.breaker.state is state else 0.0)
        yield breaker
        gauges = (
            (
                "licensing_circuit_breaker_failures",
                "Consecutive database failures counted.",
                service.breaker.failures,
            ),
            (
                "licensing_audit_buffer_pending",
                "Audit entries not yet written.",
                len(service.audit_buffer),
            ),
            (
                "licensing_audit_buffer_dropped",
                "Audit entries dropped: the buffer was full.",
                service.audit_buffer.dropped,
            ),
            (
                "licensing_snapshot_entries",
                "Licenses held for degraded answers.",
                len(service.snapshot),
            ),
            (
                "licensing_pending_writes",
                "Validation stamps not yet group-committed.",
                service.store.pending_writes(),
            ),
        )
        for name, help_text, value in gauges:
            yield GaugeMetricFamily(name, help_text, value=value)
        try:
            alive = service.alive_sessions(self._clock.now())
        except StorageUnavailable:
            return  # a scrape must not fail because the database did
        yield GaugeMetricFamily(
            "licensing_sessions_alive",
            "Device sessions with a heartbeat in the last 120 s.",
            value=alive,
        )
