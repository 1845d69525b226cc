"""Bounds on what one client connection can make the server wait for or hold,
on both HTTP paths (the ASGI path and the inline accelerator subclass this).

Why: measured on uvicorn 0.54's httptools protocol, a connection that sends
nothing, half a request line, half its headers or half its body is held
forever (uvicorn's only timer is the keep-alive one, armed after a response
and cancelled by any byte that arrives), and headers are not bounded at all
(16 MB of them were read and answered 200). Each such connection costs the
server a file descriptor and its buffers, and a few thousand of them end a
process's descriptors; a slow drip of one byte a second keeps any per-read
timer alive. So each phase of a request gets an absolute deadline, armed once
and never extended by the bytes that arrive:

- the head (request line and headers): ``header_timeout`` from the moment
  the connection opens or the first chunk that left a request's head
  unfinished; a connection that sent nothing is closed silently, one that
  sent part of a request gets 408;
- the body: ``body_timeout`` from the end of the headers to the end of the
  body, then 408;
- the head's size: over ``max_header_bytes`` (URL, names and values), 431.

Each refusal closes the connection: the rest of that request is never read.
Oversized bodies are refused (413) by the dispatcher and the accelerator
before they are read (``max_body_bytes``). The common case, a whole request
in one read, arms no timer at all: a deadline is armed only when a read
leaves a request unfinished.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState


@dataclass(frozen=True, slots=True)
class HttpLimits:
    header_timeout: float = 10.0
    body_timeout: float = 10.0
    max_header_bytes: int = 32 * 1024


def _refusal(status: int, text: str) -> bytes:
    body = text.encode("ascii")
    return (
        STATUS_LINE[status]
        + b"content-type: text/plain; charset=utf-8\r\n"
        + b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)
        + body
    )


HEAD_TIMED_OUT = _refusal(408, "Request headers not received in time")
BODY_TIMED_OUT = _refusal(408, "Request body not received in time")
HEAD_TOO_LARGE = _refusal(431, "Request header fields too large")


# The phase of the request on the connection. Plain ints, not an Enum: an
# Enum member's lookup costs more than the rest of the bookkeeping here.
IDLE = 0  # between requests (or none yet)
HEAD = 1  # a request line or headers are arriving
BODY = 2  # the headers are in, the body is arriving


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the deadlines and head bound above.
    Served as is on the ASGI path; the inline accelerator extends it."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        limits: HttpLimits | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits or HttpLimits()
        self._max_head = self.limits.max_header_bytes
        self._phase = IDLE
        self._deadline: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        self._began = False  # a request began in the read being parsed
        # We closed the connection: whatever the parser still holds is ignored.
        self._finished = False

    # ------------------------------------------------------ connection events

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # A client that connects and sends nothing gets the head's deadline too.
        self._arm(self.limits.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._finished:
            return
        self._began = False
        super().data_received(data)
        if self._deadline is not None or self._finished:
            return
        if self._phase is HEAD:
            self._arm(self.limits.header_timeout)
        elif self._phase is BODY:
            self._arm(self.limits.body_timeout)
        elif not self._began and self.timeout_keep_alive_task is None and not self._busy():
            # Bytes that began no request (stray CRLFs) cancelled the keep-alive
            # timer on their way in: without this, nothing would ever close us.
            self._arm(self.limits.header_timeout)

    # ------------------------------------------------------ parser callbacks

    def on_message_begin(self) -> None:
        if self._finished:
            return
        self._phase = HEAD
        self._began = True
        self._head_bytes = 0
        super().on_message_begin()

    # on_url and on_header run for every header of every request, so they do
    # uvicorn's work themselves (the same few lines as HttpToolsProtocol's)
    # instead of calling it: measured, the extra frame per header cost ~2 us
    # a request, a quarter of the protocol's whole time on a small GET.
    def on_url(self, url: bytes) -> None:
        if self._finished:
            return
        self._head_bytes += len(url)
        if self._head_bytes > self._max_head:
            self._refuse(HEAD_TOO_LARGE)
            return
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._finished:
            return
        self._head_bytes += len(name) + len(value)
        if self._head_bytes > self._max_head:
            self._refuse(HEAD_TOO_LARGE)
            return
        name = name.lower()
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_100_continue = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self._finished:
            return
        self.head_complete()
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._finished:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._finished:
            return
        self.body_complete()
        super().on_message_complete()

    # ------------------------------------------- for the accelerator as well

    def head_complete(self) -> None:
        """The headers are in: the body's deadline starts (armed only if it is late)."""
        if self._deadline is not None:
            self._disarm()
        self._phase = BODY

    def body_complete(self) -> None:
        if self._deadline is not None:
            self._disarm()
        self._phase = IDLE

    def _finish(self) -> None:
        self._finished = True
        self._disarm()
        self.transport.close()

    def _busy(self) -> bool:
        """An ASGI response is still being written (its end re-arms keep-alive)."""
        cycle = self.cycle
        return bool(self.pipeline) or (cycle is not None and not cycle.response_complete)

    # ---------------------------------------------------------------- timers

    def _arm(self, seconds: float) -> None:
        self._deadline = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self._finished or self.transport.is_closing():
            return
        if self.transport.get_protocol() is not self:
            return  # upgraded (WebSocket): the connection is another protocol's now
        if self._phase is BODY:
            self._refuse(BODY_TIMED_OUT)
        elif self._busy():
            # The unfinished request is pipelined behind a response still being
            # written: closing now would cut that response; wait for it.
            self._arm(self.limits.header_timeout)
        elif self._phase is HEAD:
            self._refuse(HEAD_TIMED_OUT)
        else:
            self._finish()  # nothing was asked: close, as keep-alive expiry does

    def _refuse(self, answer: bytes) -> None:
        cycle = self.cycle
        if cycle is None or cycle.response_complete or not cycle.response_started:
            # No answer has begun on the wire, so ours cannot interleave with one.
            self.transport.write(answer)
        self._finish()
