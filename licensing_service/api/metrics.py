"""Prometheus metrics, on a registry per application (nothing global)."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from licensing_service.contract.faults import fault_names
from licensing_service.domain.breaker import BreakerState
from licensing_service.service.errors import Unavailable
from licensing_service.service.faults import Faults
from licensing_service.service.licensing import LicensingService
from licensing_service.service.ports import Clock

if TYPE_CHECKING:
    from licensing_service.api.http_path import HttpPath

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """Request counts and latencies, plus the service's state at scrape time.

    Why not prometheus_client's Counter and Histogram on the hot path: each
    observation takes a lock per value it touches, 5-8% of a validation's CPU
    under load (py-spy). Requests are observed on the event loop's thread
    only, so plain integers suffice; the library still renders them (and
    everything else) at scrape time, also on that thread.
    """

    def __init__(
        self,
        service: LicensingService,
        clock: Clock,
        http_path: HttpPath,
        faults: Faults | None = None,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._requests = _RequestCollector()
        self.registry.register(self._requests)
        self.registry.register(_StateCollector(service, clock))
        self.registry.register(_HttpPathCollector(http_path))
        if faults is not None:  # harness mode only
            self.registry.register(_FaultCollector(faults))

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self._requests.observe(route, method, status, seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Latency:
    __slots__ = ("buckets", "total")

    def __init__(self) -> None:
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)  # the last one is +Inf
        self.total = 0.0


class _RequestCollector(Collector):
    def __init__(self) -> None:
        self._counts: dict[tuple[str, str, int], int] = {}
        self._latency: dict[str, _Latency] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        self._counts[key] = self._counts.get(key, 0) + 1
        latency = self._latency.get(route)
        if latency is None:
            latency = self._latency[route] = _Latency()
        # Prometheus buckets are upper bounds, inclusive ("le").
        latency.buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        latency.total += seconds

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "licensing_http_requests",
            "HTTP requests answered, by route, method and status.",
            labels=["route", "method", "status"],
        )
        for (route, method, status), count in sorted(self._counts.items()):
            requests.add_metric([route, method, str(status)], count)
        yield requests
        latency = HistogramMetricFamily(
            "licensing_http_request_duration_seconds",
            "Time from request to response, by route.",
            labels=["route"],
        )
        for route, observed in sorted(self._latency.items()):
            cumulative, buckets = 0, []
            for bound, count in zip(
                (*LATENCY_BUCKETS, float("inf")), observed.buckets, strict=True
            ):
                cumulative += count
                buckets.append((_le(bound), cumulative))
            latency.add_metric([route], buckets, observed.total)
        yield latency


def _le(bound: float) -> str:
    """A bucket's ``le`` label as Prometheus writes it (``0.005``, ``1.0``, ``+Inf``)."""
    return "+Inf" if bound == float("inf") else repr(bound)


class _HttpPathCollector(Collector):
    def __init__(self, http_path: HttpPath) -> None:
        self._path = http_path

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "licensing_http_path_info",
            "1 for the HTTP path serving requests (inline accelerator or asgi), and why.",
            labels=["path", "reason"],
        )
        info.add_metric([self._path.path, self._path.reason or ""], 1.0)
        yield info


class _FaultCollector(Collector):
    def __init__(self, faults: Faults) -> None:
        self._faults = faults

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "licensing_fault_active",
            "1 while the injected fault is on (harness mode only).",
            labels=["fault"],
        )
        active = set(self._faults.active())
        for name in fault_names():
            gauge.add_metric([name], 1.0 if name in active else 0.0)
        yield gauge


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
                service.view.known_records(),
            ),
            (
                "licensing_pending_writes",
                "Validation stamps not yet group-committed.",
                service.view.pending_stamps(),
            ),
        )
        for name, help_text, value in gauges:
            yield GaugeMetricFamily(name, help_text, value=value)
        try:
            alive = service.alive_sessions(self._clock.now())
        except Unavailable:
            return  # a scrape must not fail because the database did
        yield GaugeMetricFamily(
            "licensing_sessions_alive",
            "Device sessions with a heartbeat in the last 120 s.",
            value=alive,
        )
