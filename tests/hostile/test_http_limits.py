"""Slow and hostile clients are refused or timed out, on both HTTP paths.

Each test talks raw sockets to a real server (uvicorn in a thread) whose
deadlines are set short, and asserts the refusal itself: its status, that it
came at the deadline and not at the last byte, and that the connection was
closed. Before ``api/http_limits.py`` every one of these connections was held
open forever (and 16 MB of headers were read and answered 200).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import httpx
import pytest
from pydantic import ValidationError

from licensing_service.config import Settings
from licensing_service.contract import routes
from tests.live import LiveServer

HEAD_S = 0.2
BODY_S = 0.2
MAX_HEAD = 4096
LIMITS = {
    "header_timeout_seconds": HEAD_S,
    "body_timeout_seconds": BODY_S,
    "max_header_bytes": MAX_HEAD,
}
# An inline route, an ASGI-only route (async) and the webhook (inline, sync).
ROUTES = (routes.VALIDATE_UNIFIED, routes.CREATE_CHECKOUT_SESSION, routes.WEBHOOK)


@pytest.fixture(params=[True, False], ids=["inline", "asgi"])
def srv(request: pytest.FixtureRequest, live: Callable[..., LiveServer]) -> LiveServer:
    return live(inline_http=request.param, **LIMITS)


def connect(srv: LiveServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    return sock


def read_until_closed(sock: socket.socket, limit: float = 5) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and when the close came."""
    started = time.monotonic()
    sock.settimeout(limit)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data, time.monotonic() - started


def read_response(sock: socket.socket) -> bytes:
    """One whole response (the ASGI path writes its head and body apart)."""
    sock.settimeout(2)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    top, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in top.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    while len(body) < length:
        body += sock.recv(4096)
    return top + b"\r\n\r\n" + body


def head(path: str, *extra: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_a_connection_that_sends_nothing_is_closed_at_the_header_deadline(srv: LiveServer) -> None:
    with connect(srv) as sock:
        data, waited = read_until_closed(sock)
    assert data == b""  # nothing was asked, so nothing is answered
    assert HEAD_S * 0.8 <= waited < HEAD_S + 1.5


@pytest.mark.parametrize("path", ROUTES)
def test_half_a_head_gets_408_at_the_deadline(srv: LiveServer, path: str) -> None:
    with connect(srv) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le".encode())
        data, waited = read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 408 "), data
    assert b"connection: close" in data
    assert waited < HEAD_S + 1.5


def test_a_dripped_head_is_not_extended_by_each_byte(srv: LiveServer) -> None:
    raw = head(routes.VALIDATE_UNIFIED, "Content-Length: 2")
    with connect(srv) as sock:
        started = time.monotonic()
        answer = b""
        for byte in raw:  # one byte every 50 ms: all of it would take ~3 s
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            sock.settimeout(0.05)
            try:
                answer = sock.recv(4096)
            except TimeoutError:
                continue
            break
        elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert elapsed < HEAD_S + 1.0 < len(raw) * 0.05


@pytest.mark.parametrize("path", ROUTES)
def test_half_a_body_gets_408_at_the_body_deadline(srv: LiveServer, path: str) -> None:
    with connect(srv) as sock:
        sock.sendall(head(path, "Content-Type: application/json", "Content-Length: 200") + b'{"a')
        data, waited = read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 408 "), data
    assert b"body" in data.split(b"\r\n\r\n", 1)[1]
    assert BODY_S * 0.8 <= waited < BODY_S + 1.5


def test_a_dripped_body_is_not_extended_by_each_byte(srv: LiveServer) -> None:
    with connect(srv) as sock:
        sock.sendall(head(routes.VALIDATE_UNIFIED, "Content-Length: 100"))
        started = time.monotonic()
        answer = b""
        for _ in range(100):
            try:
                sock.sendall(b" ")
            except (BrokenPipeError, ConnectionResetError):
                break
            sock.settimeout(0.05)
            try:
                answer = sock.recv(4096)
            except TimeoutError:
                continue
            break
        elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert elapsed < BODY_S + 1.0


def test_headers_over_the_limit_get_431_without_being_read_to_the_end(srv: LiveServer) -> None:
    with connect(srv) as sock:
        sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        sent = 0
        try:
            for i in range(10_000):  # 10 MB of headers, if the server read them all
                sock.sendall(b"X-Pad-%d: %s\r\n" % (i, b"a" * 1000))
                sent += 1000
        except (BrokenPipeError, ConnectionResetError):
            pass
        data, _ = read_until_closed(sock)
    assert sent < 10_000_000
    assert data.startswith(b"HTTP/1.1 431 "), data[:80]


@pytest.mark.parametrize("path", ROUTES)
def test_a_declared_oversized_body_gets_413_before_any_of_it_is_sent(
    srv: LiveServer, path: str
) -> None:
    with connect(srv) as sock:
        sock.sendall(head(path, "Content-Type: application/json", "Content-Length: 100000000"))
        data, waited = read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 413 "), data[:80]
    assert waited < 1.0  # at once, not at the body deadline


def test_a_streamed_oversized_body_gets_413_and_the_rest_is_not_read(srv: LiveServer) -> None:
    with connect(srv) as sock:
        sock.sendall(head(routes.VALIDATE_UNIFIED, "Transfer-Encoding: chunked")[:-2] + b"\r\n")
        chunk = b"%x\r\n%s\r\n" % (8192, b"a" * 8192)
        sock.settimeout(0.02)
        answer = b""
        for _ in range(2000):  # 16 MB if it were all read
            try:
                sock.sendall(chunk)
                answer = sock.recv(4096)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
            break
        if not answer:
            answer, _ = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:80]


def test_stray_bytes_between_requests_do_not_hold_the_connection(srv: LiveServer) -> None:
    with connect(srv) as sock:
        sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert read_response(sock).startswith(b"HTTP/1.1 200 ")
        sock.sendall(b"\r\n")  # begins no request, but cancels keep-alive's timer
        data, waited = read_until_closed(sock, limit=12)
    assert data == b""
    assert waited < HEAD_S + 1.5


def test_an_idle_keep_alive_connection_outlives_the_header_deadline(srv: LiveServer) -> None:
    """Between requests uvicorn's keep-alive timer (5 s) rules, not the head's."""
    with connect(srv) as sock:
        for _ in range(2):
            sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert read_response(sock).startswith(b"HTTP/1.1 200 ")
            time.sleep(HEAD_S + 0.4)


def test_the_server_answers_others_after_refusing(srv: LiveServer) -> None:
    with connect(srv) as sock:
        sock.sendall(b"POST /validate-unified HTTP/1.1\r\n")
        read_until_closed(sock)
    assert httpx.get(srv.url + routes.HEALTH_LIVE, timeout=5).status_code == 200


@pytest.mark.parametrize(
    "setting", ["header_timeout_seconds", "body_timeout_seconds", "max_header_bytes"]
)
def test_settings_refuse_limits_that_switch_the_bound_off(setting: str) -> None:
    with pytest.raises(ValidationError, match=setting):
        Settings(**{setting: 0})
