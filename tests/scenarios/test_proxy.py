"""The fault proxy in front of the real service (a uvicorn server in a thread):
latency, resets and a black hole, switched at run time, and a probe that
notices when a fault did not take effect."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace

import httpx
import pytest

from licensing_service.contract import routes
from scenarios.proxy import FaultProxy, ProxyError, ProxyFaults, Seen, expect_seen, probe
from tests.live import LiveServer


@pytest.fixture
def proxy(server: LiveServer) -> Iterator[FaultProxy]:
    with FaultProxy(upstream=("127.0.0.1", server.port)) as running:
        yield running


def url(proxy: FaultProxy) -> str:
    return f"http://127.0.0.1:{proxy.port}{routes.HEALTH_LIVE}"


def test_a_healthy_proxy_forwards_both_ways(proxy: FaultProxy):
    assert httpx.get(url(proxy), timeout=5).status_code == 200
    counters = proxy.counters()
    assert counters.accepted == counters.forwarded == 1
    assert counters.bytes_up > 0 and counters.bytes_down > 0
    assert counters.resets == counters.blackholed == counters.bytes_dropped == 0
    assert probe(proxy.port) is Seen.ANSWERED


def test_latency_delays_every_answer_until_it_is_lifted(proxy: FaultProxy):
    proxy.set(latency_ms=300)
    with httpx.Client(timeout=5) as client:
        started = time.perf_counter()
        assert client.get(url(proxy)).status_code == 200
        assert client.get(url(proxy)).status_code == 200  # the same connection too
        assert time.perf_counter() - started >= 0.6
        proxy.set()
        started = time.perf_counter()
        assert client.get(url(proxy)).status_code == 200
        assert time.perf_counter() - started < 0.3


def test_reset_resets_open_and_new_connections_without_reaching_the_service(
    proxy: FaultProxy,
):
    with httpx.Client(timeout=5) as client:
        assert client.get(url(proxy)).status_code == 200
        proxy.set(reset=True)
        assert proxy.counters().resets == 1  # the open keep-alive connection
        with pytest.raises(httpx.TransportError):
            client.get(url(proxy))
    assert probe(proxy.port) is Seen.RESET
    assert proxy.counters().forwarded == 1  # nothing new reached the service
    proxy.set()
    assert httpx.get(url(proxy), timeout=5).status_code == 200


def test_a_black_hole_times_clients_out_and_recovers_by_itself(proxy: FaultProxy):
    with httpx.Client(timeout=0.3) as client:
        assert client.get(url(proxy)).status_code == 200
        proxy.set(blackhole=True)
        with pytest.raises(httpx.TimeoutException):
            client.get(url(proxy))  # the open connection falls in
    assert probe(proxy.port) is Seen.SILENT  # a new one is accepted, then silence
    counters = proxy.counters()
    assert counters.forwarded == 1 and counters.blackholed == 2
    assert counters.bytes_dropped > 0
    proxy.set()
    assert probe(proxy.port) is Seen.ANSWERED
    assert httpx.get(url(proxy), timeout=5).status_code == 200


class LeakyProxy(FaultProxy):
    """A planted broken proxy: its black hole still forwards."""

    async def _apply(self, faults: ProxyFaults) -> None:
        await super()._apply(replace(faults, blackhole=False))


def test_the_probe_fails_a_black_hole_that_still_forwards(server: LiveServer):
    with LeakyProxy(upstream=("127.0.0.1", server.port)) as leaky:
        leaky.set(blackhole=True)
        with pytest.raises(ProxyError, match=r"saw the connection answered.*expected silent"):
            expect_seen(leaky.port, Seen.SILENT)
    with FaultProxy(upstream=("127.0.0.1", server.port)) as sound:
        sound.set(blackhole=True)
        expect_seen(sound.port, Seen.SILENT)
        with pytest.raises(ProxyError, match="saw the connection silent"):
            expect_seen(sound.port, Seen.ANSWERED)


def test_the_proxy_stops_with_its_context_and_closes_what_is_open(server: LiveServer):
    with FaultProxy(upstream=("127.0.0.1", server.port)) as proxy:
        port = proxy.port
        proxy.set(blackhole=True)
        assert probe(port, 0.2) is Seen.SILENT
        thread = proxy._thread
    assert not thread.is_alive()
    assert probe(port, 0.2) is Seen.REFUSED


def test_refuses_a_remote_upstream_and_a_bad_latency():
    with pytest.raises(ProxyError, match="not a loopback"):
        FaultProxy(upstream=("192.0.2.1", 80))
    with pytest.raises(ProxyError, match="latency_ms must be"):
        ProxyFaults(latency_ms=-1)
