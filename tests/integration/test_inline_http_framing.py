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
from licensing_service.api.server import uvicorn_options
from licensing_service.bootstrap import LicensingApp, create_app
from licensing_service.contract import routes
from licensing_service.domain.credentials import new_unlock_token
from licensing_service.service.ports import NewCustomer
from tests import conftest
from tests.live import EPOCH, ManualClock


class RecordingTransport(asyncio.Transport):
    """What the protocol writes, and whether it closed or paused reading."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False
        self.reading = True

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closed, "write after close"
        self.written += data

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
    with app.parts.store.transaction() as tx:
        tx.insert_customer(
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
        config = uvicorn.Config(app, **uvicorn_options())
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
