"""The inline accelerator: uvicorn's httptools protocol, with synchronous
routes answered inline. Optional (``LH_INLINE_HTTP=false``) and a pure
speed-up: every request it answers, the dispatcher's ASGI path answers the
same; ``api/http_path.py`` says when it is on, and why not when it is off.

Why: measured here under wrk (64 connections, server and load on separate
cores), a raw ASGI app on uvicorn answers ~22,000 req/s and the same bytes
from a bare httptools protocol ~80,000 req/s. Per request uvicorn builds an
ASGI scope, an ``asyncio.Event``, a ``RequestResponseCycle`` and a Task, and
awaits ``send`` twice, each a socket write: ~35 us of the ~100 us a
validation costs. Our hot routes are synchronous functions of the whole
request (see ``Dispatcher.inline``), so this subclass parses with the same
parser, calls the handler from the parser's message-complete callback and
writes the answer with one write.

Everything else takes uvicorn's own path, unchanged: async routes, unknown
paths and methods, URLs with a query or escapes, upgrades, a request
pipelined behind an unfinished ASGI response, and any app that is not our
bare dispatcher (uvicorn's own wrappers), and every request
that arrives while the client is not reading its answers (uvicorn queues
them). The connection itself (flow control, graceful shutdown, workers,
lifespan, the Date header, the keep-alive timer and its handler) stays
uvicorn's; after inline answers we arm that timer ourselves, and only when
nothing is in progress. The subclass leans on ``HttpToolsProtocol``'s
attributes, so ``pyproject.toml`` pins uvicorn to the minor series
``tests/integration/test_inline_http*.py`` have run on, startup refuses
another (``http_path.TESTED_UVICORN``), and ``scripts/test-uvicorn-latest``
runs those tests against the newest uvicorn release too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from time import perf_counter
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE
from uvicorn.server import ServerState

from licensing_service.api.asgi import Dispatcher, Incoming, InlineRoute, Outgoing
from licensing_service.api.http_limits import HttpLimits, LimitedHttpToolsProtocol
from licensing_service.api.http_path import unsupported_option

log = logging.getLogger(__name__)

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
CLOSE = (b"connection", b"close")
FAILED = (
    b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 21\r\nconnection: close\r\n\r\nInternal Server Error"
)


_reported: set[str] = set()


def _dispatcher_for(config: Config, app: object) -> Dispatcher | None:
    """The dispatcher to answer from, or None (every request through ASGI) when
    ``config`` asks for what this protocol does not implement. ``server.py``
    hands uvicorn this protocol only when the same checks passed at startup,
    so a refusal here means a hand-built config: it is logged, once."""
    reason = unsupported_option(config)
    dispatcher = getattr(app, "dispatcher", None)
    if reason is None and not isinstance(dispatcher, Dispatcher):
        reason = f"uvicorn serves {type(app).__name__}, not the service's dispatcher"
    if reason is None:
        return dispatcher
    if reason not in _reported:
        _reported.add(reason)
        log.warning("inline accelerator protocol in use but off, requests take ASGI: %s", reason)
    return None


class InlineHttpProtocol(LimitedHttpToolsProtocol):
    """The deadlines and head bound of ``http_limits`` hold here too: the
    parser callbacks below report the end of each phase to them."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        limits: HttpLimits | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop, limits=limits)
        self._dispatcher = _dispatcher_for(config, self.app)
        # The request being received inline, if any, and its body so far.
        self._route: InlineRoute | None = None
        self._started = 0.0
        self._body: list[bytes] = []
        self._size = 0
        # Answer the request being received, then close (413, graceful shutdown).
        self._close_after = False
        self._answered = False

    # ------------------------------------------------------ parser callbacks

    def data_received(self, data: bytes) -> None:
        self._answered = False
        super().data_received(data)  # cancels the keep-alive timer, then parses
        if self._answered:
            self._arm_keep_alive()

    def on_headers_complete(self) -> None:
        if self._finished:
            return
        route = self._inline_route()
        if route is None:
            super().on_headers_complete()
            return
        self.head_complete()
        self._route = route
        self._started = perf_counter()
        self._body = []
        self._size = 0
        declared = self._declared_length()
        if declared is not None and declared > self._max_body():
            self._reject_too_large()
            return
        if self.expect_100_continue:
            self.transport.write(CONTINUE)

    def on_body(self, body: bytes) -> None:
        if self._finished:
            return
        if self._route is None:
            super().on_body(body)
            return
        self._size += len(body)
        if self._size > self._max_body():
            self._reject_too_large()
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._finished:
            return
        route, self._route = self._route, None
        if route is None:
            super().on_message_complete()
            return
        self.body_complete()
        dispatcher = self._dispatcher
        assert dispatcher is not None
        incoming = self._incoming(route, b"".join(self._body))
        self._body = []
        self._answer(lambda: dispatcher.answer_inline(route, incoming, self._started))

    # ---------------------------------------------------- connection events

    def shutdown(self) -> None:
        if self._route is not None:
            # A request is still arriving: answer it, then close (as uvicorn
            # lets an ASGI request in flight finish).
            self._close_after = True
            return
        super().shutdown()

    def resume_writing(self) -> None:
        super().resume_writing()
        if not self._asgi_busy():
            self.flow.resume_reading()
            self._arm_keep_alive()

    # --------------------------------------------------------------- helpers

    def _asgi_busy(self) -> bool:
        cycle = self.cycle
        return bool(self.pipeline) or (cycle is not None and not cycle.response_complete)

    def _inline_route(self) -> InlineRoute | None:
        if self._dispatcher is None or self.transport.is_closing() or self._asgi_busy():
            # Behind an ASGI response still being written, order is uvicorn's to keep.
            return None
        if self.flow.write_paused:
            # The client is not reading its answers: uvicorn's path queues the
            # requests instead of piling up their answers in the write buffer.
            return None
        if self.parser.should_upgrade():
            return None
        return self._dispatcher.inline.get((self.parser.get_method(), self.url))

    def _incoming(self, route: InlineRoute, body: bytes) -> Incoming:
        client = self.client
        return Incoming(route.method, route.path, body, self.headers, client[0] if client else None)

    def _max_body(self) -> int:
        assert self._dispatcher is not None
        return self._dispatcher.max_body

    def _declared_length(self) -> int | None:
        for name, value in self.headers:
            if name == b"content-length":
                return int(value) if value.isdigit() else None
        return None

    def _reject_too_large(self) -> None:
        route, self._route = self._route, None
        assert route is not None
        dispatcher = self._dispatcher
        assert dispatcher is not None
        incoming = self._incoming(route, b"")
        self._close_after = True  # the rest of the body is never read
        self._answer(lambda: dispatcher.too_large(incoming, self._started))

    def _answer(self, build: Callable[[], Outgoing]) -> None:
        """Build and write one answer; a failure here (not in the handler, which
        the dispatcher already answers with a 500) closes the connection with a
        plain 500, as uvicorn does for an ASGI app that raises."""
        try:
            self._respond(build())
        except Exception as exc:
            # The type only: messages may quote input.
            log.error("inline answer failed with %s; connection closed", type(exc).__name__)
            if not self.transport.is_closing():
                self.transport.write(FAILED)
                self._finish()

    def _respond(self, out: Outgoing) -> None:
        asked_close = CLOSE in out.headers
        keep_alive = (
            not self._close_after
            and not asked_close
            and self.parser.get_http_version() != "1.0"
            and self.parser.should_keep_alive()
        )
        parts = [STATUS_LINE[out.status]]
        for name, value in self.server_state.default_headers:
            parts += (name, b": ", value, b"\r\n")
        for name, value in out.headers:
            parts += (name, b": ", value, b"\r\n")
        parts.append(b"content-length: %d\r\n" % len(out.body))
        if not keep_alive and not asked_close:
            parts.append(b"connection: close\r\n")
        parts += (b"\r\n", out.body)
        self.transport.write(b"".join(parts))
        self.server_state.total_requests += 1
        if not keep_alive:
            self._finish()
            return
        self._answered = True
        if self.flow.write_paused:
            # Stop reading requests until the client reads its answers (resume_writing).
            self.flow.pause_reading()

    def _finish(self) -> None:
        self._route = None
        super()._finish()

    def _arm_keep_alive(self) -> None:
        """Start the idle timer once nothing is in progress: not while a request
        is arriving or an ASGI response is pending (their own ends re-arm it),
        nor while reading is paused on a client that is slow to read."""
        if (
            self.timeout_keep_alive_task is not None
            or self._route is not None
            or self.transport.is_closing()
            or self.flow.read_paused
            or self._asgi_busy()
        ):
            return
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )
