"""A minimal ASGI dispatcher: exact-path routing to synchronous handlers.

The service's one HTTP path: every request can be answered here, through
ASGI; the inline accelerator (``api/inline_http.py``) answers the
synchronous routes from the protocol instead, through ``answer_inline``,
with the same fallbacks, CORS and metrics.

Why not Starlette's router: measured on this 2-core machine under wrk, a
bare Starlette JSON endpoint answers ~10,600 req/s and the same endpoint as
raw ASGI ~21,000 req/s; Starlette's middleware, routing and Request/Response
layers cost ~50 us a request, a quarter of the 200 us that 5,000 req/s
allows. Our routes are fixed paths and every use case is synchronous, so a
dict lookup and a plain function call are all the routing we need.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from time import perf_counter
from typing import TYPE_CHECKING

from starlette.types import Message, Receive, Scope, Send

from licensing_service.api.messages import Handler as Handler
from licensing_service.api.messages import Headers as Headers
from licensing_service.api.messages import Incoming as Incoming
from licensing_service.api.messages import InlineRoute as InlineRoute
from licensing_service.api.messages import Outgoing as Outgoing
from licensing_service.api.metrics import Metrics

if TYPE_CHECKING:
    from licensing_service.api.cors import CorsPolicy

log = logging.getLogger(__name__)


class BodyTooLarge(Exception):
    pass


class ClientGone(Exception):
    """The client disconnected before its body arrived: nobody to answer."""


@dataclass(frozen=True, slots=True)
class Fallbacks:
    """Answers the dispatcher gives itself (built by the composition root)."""

    not_found: Callable[[Incoming], Outgoing]
    not_allowed: Callable[[Incoming], Outgoing]
    too_large: Callable[[Incoming], Outgoing]
    crashed: Callable[[Incoming, Exception], Outgoing]


class Dispatcher:
    def __init__(
        self,
        routes: dict[str, dict[str, Handler]],
        *,
        metrics: Metrics,
        max_body_bytes: int,
        fallbacks: Fallbacks,
        lifespan: Callable[[], AbstractAsyncContextManager[None]],
        cors: CorsPolicy | None = None,
    ) -> None:
        self.routes = routes
        self.metrics = metrics
        self.max_body = max_body_bytes
        self.fallbacks = fallbacks
        self.lifespan = lifespan
        self.cors = cors
        # What the inline HTTP protocol may answer without ASGI: every route whose
        # handler is synchronous, keyed as the parser reports them (bytes).
        self.inline: dict[tuple[bytes, bytes], InlineRoute] = {
            (method.encode(), path.encode()): InlineRoute(method, path, handler)  # type: ignore[arg-type]
            for path, by_method in routes.items()
            for method, handler in by_method.items()
            if not inspect.iscoroutinefunction(handler)
        }
        if cors is not None:
            # Preflights to our paths are answered inline too (answer_inline asks
            # the policy first); any other OPTIONS gets the 405 the ASGI path gives.
            for path, by_method in routes.items():
                if "OPTIONS" not in by_method:
                    key = (b"OPTIONS", path.encode())
                    self.inline[key] = InlineRoute("OPTIONS", path, fallbacks.not_allowed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = perf_counter()
        client = scope.get("client")
        incoming = Incoming(
            scope["method"],
            scope["path"],
            b"",
            scope["headers"],
            client[0] if client else None,
            scope.get("query_string", b""),
        )
        try:
            incoming.body = await self._read_body(scope, receive)
        except ClientGone:
            return  # running the handler on a partial body could only mislead
        except BodyTooLarge:
            out = self._too_large(incoming)
        else:
            out = await self.answer(incoming)
        headers = out.headers
        headers.append((b"content-length", str(len(out.body)).encode()))
        await send({"type": "http.response.start", "status": out.status, "headers": headers})
        await send({"type": "http.response.body", "body": out.body})
        route = incoming.path if incoming.path in self.routes else "unmatched"
        self.metrics.observe(route, incoming.method, out.status, perf_counter() - started)

    async def answer(self, incoming: Incoming) -> Outgoing:
        """The answer to a whole request (its body read), CORS included; any
        server adapter may call it (ASGI here; RSGI in benchmarks/)."""
        cors = self.cors
        if cors is not None and cors.is_preflight(incoming):
            return cors.preflight(incoming)
        by_method = self.routes.get(incoming.path)
        try:
            handler = by_method.get(incoming.method) if by_method is not None else None
            if handler is not None:
                answer = handler(incoming)
                out = answer if isinstance(answer, Outgoing) else await answer
            elif by_method is None:
                out = self.fallbacks.not_found(incoming)
            else:
                out = self.fallbacks.not_allowed(incoming)
        except Exception as exc:
            out = self.fallbacks.crashed(incoming, exc)
        return self._with_cors(incoming, out)

    def answer_inline(self, route: InlineRoute, incoming: Incoming, started: float) -> Outgoing:
        """Run a synchronous route for the inline protocol: same fallbacks, CORS
        and metrics as the ASGI path; the caller frames and writes the answer."""
        cors = self.cors
        if cors is not None and cors.is_preflight(incoming):
            out = cors.preflight(incoming)
        else:
            out = self._with_cors(incoming, self._run_sync(route, incoming))
        self.metrics.observe(incoming.path, incoming.method, out.status, perf_counter() - started)
        return out

    def _run_sync(self, route: InlineRoute, incoming: Incoming) -> Outgoing:
        try:
            out = route.handler(incoming)
            if not isinstance(out, Outgoing):  # an awaitable from a sync-looking handler
                close = getattr(out, "close", None)
                if close is not None:
                    close()
                raise TypeError(f"{incoming.path} answered an awaitable on the inline path")
        except Exception as exc:
            out = self.fallbacks.crashed(incoming, exc)
        return out

    def _with_cors(self, incoming: Incoming, out: Outgoing) -> Outgoing:
        if self.cors is not None:
            self.cors.add_headers(incoming, out)
        return out

    def too_large(self, incoming: Incoming, started: float) -> Outgoing:
        """The inline protocol's 413 (it stops reading the body)."""
        out = self._too_large(incoming)
        self.metrics.observe(incoming.path, incoming.method, out.status, perf_counter() - started)
        return out

    def _too_large(self, incoming: Incoming) -> Outgoing:
        out = self._with_cors(incoming, self.fallbacks.too_large(incoming))
        # The rest of the body is never read: the connection cannot be reused.
        out.headers.append((b"connection", b"close"))
        return out

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body:
                raise BodyTooLarge
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise BodyTooLarge
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)  # one chunk (the usual case) is returned as is, not copied

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        message: Message = await receive()
        assert message["type"] == "lifespan.startup"
        context = self.lifespan()
        try:
            await context.__aenter__()
        except Exception as exc:
            log.exception("startup failed")
            await send({"type": "lifespan.startup.failed", "message": str(exc)})
            return
        await send({"type": "lifespan.startup.complete"})
        message = await receive()
        assert message["type"] == "lifespan.shutdown"
        await context.__aexit__(None, None, None)
        await send({"type": "lifespan.shutdown.complete"})
