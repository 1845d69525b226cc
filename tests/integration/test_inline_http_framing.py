"""Framing of the inline protocol, fed byte slices directly (no sockets).

A socket test cannot choose where the server's reads split a request; here
the protocol gets ``data_received`` calls at the boundaries hypothesis picks,
and every split of the same pipelined requests must give the same answers,
in the same order, as the requests sent whole: inline routes, uvicorn's ASGI
path (an async route, a 404, a URL with a query) and bad input mixed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import timedelta
from itertools import pairwise
from typing import Any

import pytest
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from uvicorn.server import ServerState

from licensing_service.api.inline_http import InlineHttpProtocol
from licensing_service.api.server import BASE_OPTIONS
from licensing_service.bootstrap import LicensingApp, create_app
from licensing_service.contract import routes
from licensing_service.domain.credentials import new_unlock_token
from licensing_service.service.ports import NewCustomer
from tests import conftest
from tests.live import EPOCH, ManualClock


class RecordingTransport(asyncio.Transport):
    """What the protocol writes, and whether it closed or paused reading."""

    def __init__(self, high_water: int | None = None) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False
        self.reading = True
        # Like asyncio's transports: above the high-water mark the protocol is told
        # to pause writing (the peer is not reading).
        self.high_water = high_water
        self.protocol: asyncio.Protocol | None = None
        self.paused = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closed, "write after close"
        self.written += data
        over = self.high_water is not None and len(self.written) > self.high_water
        if over and not self.paused and self.protocol is not None:
            self.paused = True
            self.protocol.pause_writing()

    def drain(self) -> bytes:
        """The peer reads everything written so far."""
        out, self.written = bytes(self.written), bytearray()
        if self.paused and self.protocol is not None:
            self.paused = False
            self.protocol.resume_writing()
        return out

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8787)}.get(
            name, default
        )


def request(method: str, target: str, body: bytes = b"", *extra: str) -> bytes:
    head = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", *extra]
    if method == "POST":
        head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def responses(raw: bytes) -> list[tuple[int, bytes]]:
    """(status, error code or validity) of each response, in order."""
    out = []
    rest = raw
    while rest:
        head, rest = rest.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = next(
            int(line.split(b":", 1)[1])
            for line in lines
            if line.lower().startswith(b"content-length")
        )
        body, rest = rest[:length], rest[length:]
        doc = json.loads(body)
        if "error" in doc:
            summary = doc["error"]["code"].encode()
        elif "validation" in doc:
            summary = b"valid" if doc["validation"]["valid"] else b"invalid"
        else:
            summary = b"other"
        out.append((status, summary))
    return out


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LicensingApp]:
    settings_ = conftest.test_settings(tmp_path_factory.mktemp("framing"))
    built = create_app(settings_, clock=ManualClock(EPOCH), background=False)
    yield built
    built.parts.store.close()


@pytest.fixture(scope="module")
def requests_(app: LicensingApp) -> dict[str, bytes]:
    token = new_unlock_token()
    now = app.parts.clock.now()
    with app.parts.store.transaction() as uow:
        uow.licenses.insert(
            NewCustomer(
                email="framing@example.test",
                name="Framing Till",
                unlock_token=token,
                subscription_status="active",
                current_period_end=now + timedelta(days=30),
            ),
            now,
        )
    valid = json.dumps(
        {
            "operation": "validate",
            "credentials": {"email": "framing@example.test", "token": token},
        }
    ).encode()
    return {
        "validate": request("POST", routes.VALIDATE_UNIFIED, valid),
        "bad-json": request("POST", routes.VALIDATE_UNIFIED, b'{"operation": '),
        "query": request("POST", routes.VALIDATE_UNIFIED + "?x=1", valid),
        "checkout": request("POST", routes.CREATE_CHECKOUT_SESSION, b'{"email": "a@b.test"}'),
        "unknown": request("GET", "/nowhere"),
        "live": request("GET", routes.HEALTH_LIVE),
        "chunked": (
            f"POST {routes.VALIDATE_UNIFIED} HTTP/1.1\r\nHost: x\r\n"
            "Transfer-Encoding: chunked\r\n\r\n"
        ).encode()
        + b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (valid[:9], valid[9:]))
        + b"0\r\n\r\n",
    }


def serve(app: LicensingApp, pieces: list[bytes]) -> tuple[bytes, RecordingTransport]:
    async def run() -> tuple[bytes, RecordingTransport]:
        config = uvicorn.Config(app, **BASE_OPTIONS)
        config.load()
        state = ServerState()
        protocol = InlineHttpProtocol(config, state, {}, _loop=asyncio.get_running_loop())
        transport = RecordingTransport()
        protocol.connection_made(transport)
        for piece in pieces:
            protocol.data_received(piece)
            for _ in range(20):  # let ASGI tasks (and the pipeline they release) run
                await asyncio.sleep(0)
        for _ in range(200):
            if not state.tasks:
                break
            await asyncio.sleep(0)
        assert not state.tasks, "an ASGI task never finished"
        protocol.connection_lost(None)
        return bytes(transport.written), transport

    return asyncio.run(run())


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in pairwise(bounds) if b > a]


KINDS = ["validate", "bad-json", "query", "checkout", "unknown", "live", "chunked"]
EXPECTED = {
    "validate": (200, b"valid"),
    "bad-json": (400, b"INVALID_REQUEST_FORMAT"),
    "query": (200, b"valid"),
    "checkout": (503, b"STRIPE_NOT_CONFIGURED"),
    "unknown": (404, b"NOT_FOUND"),
    "live": (200, b"other"),
    "chunked": (200, b"valid"),
}


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    kinds=st.lists(st.sampled_from(KINDS), min_size=1, max_size=6),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
)
def test_any_split_of_pipelined_requests_gives_the_same_answers_in_order(
    app: LicensingApp, requests_: dict[str, bytes], kinds: list[str], cuts: list[int]
) -> None:
    data = b"".join(requests_[k] for k in kinds)
    written, transport = serve(app, split(data, cuts))
    assert responses(written) == [EXPECTED[k] for k in kinds]
    assert transport.reading, "reading left paused after every answer was written"


def test_the_fixture_requests_really_take_both_paths(
    app: LicensingApp, requests_: dict[str, bytes]
) -> None:
    """The split test only means something if both paths are exercised."""
    dispatcher = app.dispatcher
    assert dispatcher is not None
    assert (b"POST", routes.VALIDATE_UNIFIED.encode()) in dispatcher.inline
    assert (b"POST", routes.CREATE_CHECKOUT_SESSION.encode()) not in dispatcher.inline

    async def protocol_answers_inline() -> bool:
        protocol, _ = await _connected(app, RecordingTransport())
        return protocol._dispatcher is dispatcher

    assert asyncio.run(protocol_answers_inline()), "the protocol would serve everything via ASGI"


async def _connected(
    app: LicensingApp, transport: RecordingTransport, **overrides: Any
) -> tuple[InlineHttpProtocol, ServerState]:
    config = uvicorn.Config(app, **{**BASE_OPTIONS, **overrides})
    config.load()
    state = ServerState()
    protocol = InlineHttpProtocol(config, state, {}, _loop=asyncio.get_running_loop())
    transport.protocol = protocol
    protocol.connection_made(transport)
    return protocol, state


async def _settle(state: ServerState) -> None:
    for _ in range(500):
        await asyncio.sleep(0)
        if not state.tasks:
            return


def test_a_client_that_does_not_read_cannot_pile_answers_up_in_memory(
    app: LicensingApp,
) -> None:
    """Review finding: every request of one read was answered into the write
    buffer even after it had paused (256 KiB of requests -> 154 MiB)."""
    one = request("GET", routes.OPENAPI)
    many = 200

    async def run() -> None:
        transport = RecordingTransport(high_water=64 * 1024)
        protocol, state = await _connected(app, transport)
        try:
            protocol.data_received(one * many)
            await _settle(state)
            # Past the mark the rest wait as requests (uvicorn's pipeline), not answers.
            assert transport.paused
            assert transport.written.count(b"HTTP/1.1 200") <= 3
            assert protocol.timeout_keep_alive_task is None, "idle timer on a paused reader"
            received = b""
            for _ in range(many * 2):
                received += transport.drain()
                await _settle(state)
                if received.count(b"HTTP/1.1 200") == many and not transport.written:
                    break
            assert received.count(b"HTTP/1.1 200") == many
            assert protocol.timeout_keep_alive_task is not None, "idle again: timer armed"
        finally:
            # uvicorn's tasks wait for the client to read: let them finish whatever happened.
            transport.high_water = None
            transport.drain()
            protocol.connection_lost(None)
            await _settle(state)

    asyncio.run(run())


def test_nothing_after_a_413_is_parsed_or_run(app: LicensingApp) -> None:
    """Review finding: after a 413 the parser's remaining callbacks reached
    uvicorn's code (a stray 400) or started the next pipelined request."""
    advance = request("POST", routes.HARNESS_CLOCK, b'{"advance_seconds": 3600}')
    too_big = (
        f"POST {routes.VALIDATE_UNIFIED} HTTP/1.1\r\nHost: x\r\nContent-Length: 70000\r\n\r\n"
    ).encode() + b"{" * 70000  # sent whole, so the parser reaches the next request
    before = app.parts.clock.now()

    async def run() -> bytes:
        transport = RecordingTransport()
        protocol, state = await _connected(app, transport)
        # An ASGI answer first, so uvicorn's cycle state is set as on a busy connection.
        protocol.data_received(request("GET", routes.HEALTH_LIVE + "?warm=1"))
        await _settle(state)
        protocol.data_received(too_big + advance)
        await _settle(state)
        assert transport.closed
        protocol.connection_lost(None)
        return bytes(transport.written)

    written = asyncio.run(run())
    assert [status for status, _ in responses(written)] == [200, 413]
    assert app.parts.clock.now() == before, "the request after the 413 was run"


def test_the_idle_timer_never_runs_while_a_request_is_arriving(app: LicensingApp) -> None:
    """Review finding: the timer armed after one answer closed the connection
    under the next request, parsed later in the same read."""
    body = b'{"operation": "validate"}'
    whole = request("POST", routes.VALIDATE_UNIFIED, body)

    async def run() -> None:
        transport = RecordingTransport()
        protocol, state = await _connected(app, transport)
        protocol.data_received(whole + whole[:-5])  # one answered, one still arriving
        assert protocol.timeout_keep_alive_task is None
        protocol.data_received(whole[-5:])
        assert protocol.timeout_keep_alive_task is not None
        await _settle(state)
        assert [status for status, _ in responses(bytes(transport.written))] == [400, 400]
        protocol.connection_lost(None)

    asyncio.run(run())


def test_a_failure_outside_the_handler_is_a_500_and_a_closed_connection(
    app: LicensingApp, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    dispatcher = app.dispatcher
    assert dispatcher is not None

    def broken(*args: object) -> None:
        raise RuntimeError("secret-looking detail")

    monkeypatch.setattr(dispatcher.metrics, "observe", broken)

    async def run() -> RecordingTransport:
        transport = RecordingTransport()
        protocol, state = await _connected(app, transport)
        protocol.data_received(request("GET", routes.HEALTH_LIVE))
        await _settle(state)
        return transport

    transport = asyncio.run(run())
    assert transport.written.startswith(b"HTTP/1.1 500 ")
    assert transport.closed
    assert "RuntimeError" in caplog.text
    assert "secret-looking detail" not in caplog.text


def test_a_client_gone_before_its_body_is_never_answered_nor_handled(app: LicensingApp) -> None:
    """On uvicorn's ASGI path a disconnect arrives as a message: the dispatcher
    must not run the handler on the partial body it has."""
    sent: list[object] = []
    messages = [
        {"type": "http.request", "body": b'{"operation": ', "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> dict[str, object]:
        return messages.pop(0)

    async def send(message: object) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": routes.HARNESS_CLOCK,
        "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 50000),
        "query_string": b"",
    }
    asyncio.run(app(scope, receive, send))  # type: ignore[arg-type]
    assert sent == []
    assert not messages
