"""The service's dispatcher behind other servers, for validate_throughput.py.

Benchmark-only (nothing in the service imports this): the same handlers,
store and metrics as ``licensing-harness serve``, served

- by granian over ASGI (the dispatcher as it is: ``granian_asgi``),
- by granian over RSGI (``granian_rsgi``: ``RsgiService`` below),
- by Starlette's own Router, Request and Response on uvicorn
  (``starlette_app``: each route an endpoint that turns the Request into our
  ``Incoming`` and our ``Outgoing`` into a Response).

Each factory reads the service's settings from the environment (LH_DB, ...)
and tells the app how it is served, so /health says so.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from time import perf_counter
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from licensing_service import logs
from licensing_service.api.asgi import Handler, Incoming, Outgoing
from licensing_service.api.http_path import asgi
from licensing_service.bootstrap import LicensingApp, create_app
from licensing_service.config import Settings


def _service(served_by: str) -> LicensingApp:
    settings = Settings()
    logs.configure(settings.log_level)
    return create_app(settings, http_path=asgi(f"served by {served_by} (benchmark variant)"))


def granian_asgi() -> LicensingApp:
    return _service("granian over ASGI")


def granian_rsgi() -> RsgiService:
    return RsgiService(_service("granian over RSGI"))


def starlette_app() -> Starlette:
    return starlette_routes(_service("Starlette's router on uvicorn"))


class RsgiService:
    """The dispatcher as an RSGI application (granian's native interface):
    ``__rsgi__(scope, protocol)``, the body from ``await protocol()``, the
    answer through ``protocol.response_bytes``; the lifespan runs in granian's
    ``__rsgi_init__`` / ``__rsgi_del__`` hooks, on the worker's loop."""

    def __init__(self, app: LicensingApp) -> None:
        self.dispatcher = app.dispatcher
        self._lifespan: AbstractAsyncContextManager[None] | None = None

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._lifespan = self.dispatcher.lifespan()
        loop.run_until_complete(self._lifespan.__aenter__())

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._lifespan is not None:
            loop.run_until_complete(self._lifespan.__aexit__(None, None, None))

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        if scope.proto != "http":
            return
        started = perf_counter()
        dispatcher = self.dispatcher
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in scope.headers.items()]
        client = scope.client.rsplit(":", 1)[0] if scope.client else None
        incoming = Incoming(
            scope.method, scope.path, b"", headers, client, scope.query_string.encode()
        )
        incoming.body = await protocol()
        if len(incoming.body) > dispatcher.max_body:
            out = dispatcher.too_large(incoming, started)
        else:
            out = await dispatcher.answer(incoming)
            route = incoming.path if incoming.path in dispatcher.routes else "unmatched"
            dispatcher.metrics.observe(route, incoming.method, out.status, perf_counter() - started)
        protocol.response_bytes(
            out.status,
            [(k.decode("latin-1"), v.decode("latin-1")) for k, v in out.headers],
            out.body,
        )


def starlette_routes(app: LicensingApp) -> Starlette:
    """The same handlers, routed by Starlette (its 404/405 and error pages)."""
    dispatcher = app.dispatcher
    metrics = dispatcher.metrics

    def endpoint(by_method: dict[str, Handler]) -> Callable[[Request], Awaitable[Response]]:
        async def answer(request: Request) -> Response:
            started = perf_counter()
            incoming = Incoming(
                request.method,
                request.url.path,
                await request.body(),
                request.headers.raw,
                request.client.host if request.client else None,
                request.url.query.encode(),
            )
            result = by_method[request.method](incoming)
            out = result if isinstance(result, Outgoing) else await result
            response = Response(out.body, status_code=out.status)
            response.raw_headers.extend(out.headers)
            metrics.observe(incoming.path, incoming.method, out.status, perf_counter() - started)
            return response

        return answer

    routes = [
        Route(path, endpoint(by_method), methods=list(by_method))
        for path, by_method in dispatcher.routes.items()
    ]
    return Starlette(routes=routes, lifespan=lambda _: dispatcher.lifespan())
