"""The inline HTTP protocol (api/inline_http.py), over raw sockets to a real uvicorn.

Each test speaks HTTP/1.1 byte by byte, so framing is checked as a client
sees it: keep-alive, pipelining order, 100-continue, body limits, closing.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from licensing_service.api.asgi import Dispatcher, Incoming, InlineRoute, Outgoing
from licensing_service.contract import routes
from tests import conftest
from tests.conftest import Customer, add_customer
from tests.live import LiveServer

ANSWER_TIMEOUT = 5.0


class Conn:
    """One client connection, reading whole responses (status, headers, body)."""

    def __init__(self, server: LiveServer) -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=ANSWER_TIMEOUT)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buffer += chunk
        return bool(chunk)

    def response(self) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buffer:
            if not self._fill():
                raise ConnectionError("closed before a response head")
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            if not self._fill():
                raise ConnectionError("closed inside a body")
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return status, headers, body

    def closed_by_server(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()


def post(path: str, body: bytes, *extra: str, version: str = "1.1") -> bytes:
    head = [f"POST {path} HTTP/{version}", "Host: 127.0.0.1", "Content-Type: application/json"]
    head += [f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def validate_body(customer: Customer) -> bytes:
    return json.dumps(
        {
            "operation": "validate",
            "credentials": {"email": customer.email, "token": customer.token},
            "device": {"machineFingerprint": "till-1"},
        }
    ).encode()


@pytest.fixture
def conn(server: LiveServer) -> Iterator[Conn]:
    c = Conn(server)
    yield c
    c.close()


def requests_answered(server: LiveServer, path: str) -> float:
    text = httpx.get(f"{server.url}{routes.METRICS}").text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("licensing_http_requests_total{") and f'route="{path}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def count_inline(server: LiveServer) -> list[str]:
    """Records the routes the accelerator answers (the protocol calls this method)."""
    dispatcher: Dispatcher = server.app.dispatcher
    seen: list[str] = []
    original = dispatcher.answer_inline

    def spy(route: InlineRoute, incoming: Incoming, started: float) -> Outgoing:
        seen.append(f"{incoming.method} {incoming.path}")
        return original(route, incoming, started)

    dispatcher.answer_inline = spy  # type: ignore[method-assign]
    return seen


def test_these_requests_are_answered_by_the_accelerator(
    conn: Conn, server: LiveServer, customer: Customer
) -> None:
    """The tests here are about the accelerator only while it really answers
    (an untested uvicorn, an option it lacks would silently test ASGI)."""
    assert server.app.http_path.inline
    seen = count_inline(server)
    conn.send(post(routes.VALIDATE_UNIFIED, validate_body(customer)))
    assert conn.response()[0] == 200
    assert seen == [f"POST {routes.VALIDATE_UNIFIED}"]


def test_keep_alive_answers_many_requests_on_one_connection(
    conn: Conn, server: LiveServer, customer: Customer
) -> None:
    before = requests_answered(server, routes.VALIDATE_UNIFIED)
    for _ in range(5):
        conn.send(post(routes.VALIDATE_UNIFIED, validate_body(customer)))
        status, headers, body = conn.response()
        assert status == 200
        assert json.loads(body)["validation"]["valid"] is True
        assert headers["cache-control"].startswith("private, max-age=")
        assert "date" in headers  # uvicorn's default headers are kept
        assert "connection" not in headers
    assert requests_answered(server, routes.VALIDATE_UNIFIED) == before + 5


def test_pipelined_requests_are_answered_in_order(conn: Conn, customer: Customer) -> None:
    bodies = [validate_body(customer), b"{not json", validate_body(customer)]
    conn.send(b"".join(post(routes.VALIDATE_UNIFIED, b) for b in bodies))
    statuses = [conn.response()[0] for _ in bodies]
    assert statuses == [200, 400, 200]


def test_a_pipelined_inline_request_waits_for_an_asgi_answer_before_it(
    conn: Conn, customer: Customer
) -> None:
    # The checkout route is async (ASGI path); the validation after it must not overtake it.
    checkout = post(routes.CREATE_CHECKOUT_SESSION, b'{"email": "x@example.test"}')
    conn.send(checkout + post(routes.VALIDATE_UNIFIED, validate_body(customer)))
    first, second = conn.response(), conn.response()
    assert first[0] == 503  # no Stripe key configured in the test settings
    assert json.loads(first[2])["error"]["code"] == "STRIPE_NOT_CONFIGURED"
    assert second[0] == 200
    assert json.loads(second[2])["validation"]["valid"] is True


def test_connection_close_and_http_1_0_close_after_the_answer(
    server: LiveServer, customer: Customer
) -> None:
    for request in (
        post(routes.VALIDATE_UNIFIED, validate_body(customer), "Connection: close"),
        post(routes.VALIDATE_UNIFIED, validate_body(customer), version="1.0"),
    ):
        c = Conn(server)
        c.send(request)
        status, headers, _ = c.response()
        assert status == 200
        assert headers["connection"] == "close"
        assert c.closed_by_server()
        c.close()


def test_expect_100_continue_is_answered_before_the_body(conn: Conn, customer: Customer) -> None:
    body = validate_body(customer)
    request = post(routes.VALIDATE_UNIFIED, body, "Expect: 100-continue")
    conn.send(request[: -len(body)])
    status, _, _ = conn.response()
    assert status == 100
    conn.send(body)
    assert conn.response()[0] == 200


def test_declared_oversize_body_gets_413_and_the_connection_closes(conn: Conn) -> None:
    conn.send(
        b"POST /validate-unified HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n"
        + b"{" * 10
    )
    status, headers, body = conn.response()
    assert status == 413
    assert json.loads(body)["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert headers["connection"] == "close"
    assert conn.closed_by_server()


def test_chunked_body_over_the_limit_gets_413(conn: Conn) -> None:
    chunk = b"a" * 40_000
    piece = b"%x\r\n%s\r\n" % (len(chunk), chunk)
    conn.send(
        b"POST /validate-unified HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        + piece * 2
    )
    status, headers, _ = conn.response()
    assert status == 413
    assert headers["connection"] == "close"


def test_chunked_body_within_the_limit_is_read_whole(conn: Conn, customer: Customer) -> None:
    body = validate_body(customer)
    halves = (body[:20], body[20:])
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(h), h) for h in halves) + b"0\r\n\r\n"
    conn.send(
        b"POST /validate-unified HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks
    )
    assert conn.response()[0] == 200


def test_malformed_request_line_gets_400(conn: Conn) -> None:
    conn.send(b"POST /validate-unified HTTP/9.9\r\n\r\n")
    assert conn.response()[0] == 400


def test_idle_connection_is_closed_after_the_keep_alive_timeout(
    live: Callable[..., LiveServer],
) -> None:
    srv = live({"timeout_keep_alive": 0.3})
    c = Conn(srv)
    c.send(post(routes.VALIDATE_UNIFIED, validate_body(add_customer(srv))))
    assert c.response()[0] == 200
    c.sock.settimeout(3)
    assert c.closed_by_server()  # within 3 s, not the default 5 s
    c.close()


def test_routes_with_a_query_or_unknown_paths_take_the_asgi_path(
    conn: Conn, customer: Customer
) -> None:
    conn.send(post(routes.VALIDATE_UNIFIED + "?trace=1", validate_body(customer)))
    assert conn.response()[0] == 200
    conn.send(post("/nowhere", b"{}"))
    status, _, body = conn.response()
    assert status == 404
    assert json.loads(body)["error"]["code"] == "NOT_FOUND"


def test_inline_http_off_serves_the_same_answers(
    live: Callable[..., LiveServer],
) -> None:
    srv = live(inline_http=False)
    c = Conn(srv)
    c.send(post(routes.VALIDATE_UNIFIED, validate_body(add_customer(srv))))
    status, headers, body = c.response()
    c.close()
    assert status == 200
    assert json.loads(body)["validation"]["valid"] is True
    assert headers["cache-control"].startswith("private, max-age=")


def test_graceful_shutdown_answers_a_request_still_arriving_then_closes(
    tmp_path: Path,
) -> None:
    srv = LiveServer(conftest.test_settings(tmp_path)).start()
    customer = add_customer(srv)
    body = validate_body(customer)
    request = post(routes.VALIDATE_UNIFIED, body, "Expect: 100-continue")
    c = Conn(srv)
    try:
        c.send(request[: -len(body)])
        # The 100 says the server has parsed the headers: the request is in progress.
        assert c.response()[0] == 100
        stopper = threading.Thread(target=srv.stop)
        stopper.start()
        # Once new connections are refused, uvicorn has asked every connection to shut down.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", srv.port), timeout=0.5).close()
            except OSError:
                break
        else:
            pytest.fail("the server kept accepting connections")
        c.send(body)
        status, headers, _ = c.response()
        assert status == 200
        assert headers["connection"] == "close"
        assert c.closed_by_server()
    finally:
        c.close()
        srv.stop()
    stopper.join(timeout=10)
    assert not stopper.is_alive()
