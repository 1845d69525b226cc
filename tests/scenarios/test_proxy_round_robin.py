"""The proxy in front of several upstreams (the replicas' one address): each new
connection goes to the next upstream in turn, and one that refuses (a killed
replica) passes the connection on to the next."""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Iterator

import httpx
import pytest

from scenarios.proxy import FaultProxy, ProxyError
from tests.live import refusing_port


class _Named(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.recv(65_536)
        name = self.server.name  # type: ignore[attr-defined]
        body = name.encode()
        self.request.sendall(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
            % (len(body), body)
        )


@pytest.fixture
def upstreams() -> Iterator[list[socketserver.ThreadingTCPServer]]:
    servers = []
    for name in "abc":
        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Named)
        server.name = name  # type: ignore[attr-defined]
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    yield servers
    for server in servers:
        server.shutdown()
        server.server_close()


def _address(server: socketserver.ThreadingTCPServer) -> tuple[str, int]:
    return ("127.0.0.1", int(server.server_address[1]))


def _names(port: int, count: int) -> list[str]:
    # A new client each time: round-robin is per connection, not per request.
    return [httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text for _ in range(count)]


def test_each_new_connection_goes_to_the_next_upstream(
    upstreams: list[socketserver.ThreadingTCPServer],
) -> None:
    with FaultProxy(upstreams=[_address(s) for s in upstreams]) as proxy:
        assert _names(proxy.port, 6) == ["a", "b", "c", "a", "b", "c"]
        assert proxy.spread() == [2, 2, 2]
        assert proxy.failovers() == 0
        assert proxy.refused() == [0, 0, 0]


def test_a_refusing_upstream_passes_its_connections_on(
    upstreams: list[socketserver.ThreadingTCPServer],
) -> None:
    with refusing_port() as port:  # nothing listens there: a killed replica
        dead = ("127.0.0.1", port)
        addresses = [_address(upstreams[0]), dead, _address(upstreams[1])]
        with FaultProxy(upstreams=addresses) as proxy:
            assert _names(proxy.port, 4) == ["a", "b", "b", "a"]
            assert proxy.spread() == [2, 0, 2]
            assert proxy.failovers() == 1
            assert proxy.refused() == [0, 1, 0]  # the dead upstream, named


def test_every_upstream_refusing_ends_the_connection() -> None:
    with (
        refusing_port() as port,
        FaultProxy(upstreams=[("127.0.0.1", port)]) as proxy,
        pytest.raises(httpx.HTTPError),
    ):
        httpx.get(f"http://127.0.0.1:{proxy.port}/", timeout=5)


def test_upstreams_must_be_given_and_on_loopback() -> None:
    with pytest.raises(ProxyError, match="no upstream"):
        FaultProxy(upstreams=[])
    with pytest.raises(ProxyError, match="loopback"):
        FaultProxy(upstreams=[("127.0.0.1", 1), ("192.0.2.1", 80)])
