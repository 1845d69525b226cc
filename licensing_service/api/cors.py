"""CORS for both HTTP paths, decided by Starlette's ``CORSMiddleware``.

Why not the middleware around the dispatcher: an ASGI wrapper is invisible
to the inline accelerator, which answers from the protocol, so a CORS
configuration used to switch the accelerator off. The dispatcher asks this
policy instead, on both paths, and every decision stays the middleware's:
a preflight gets the answer of its ``preflight_response``, and any other
answer the headers its ``send`` adds (allow-origin for an allowed origin,
``Vary: Origin``). ``tests/integration/test_inline_http_cors.py`` compares
the two, request for request, against the middleware wrapping the app.
One difference, on purpose: the body limit comes first on both paths, so a
preflight whose body is over it gets the 413 (the middleware would answer it
unread); browsers send preflights without a body.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.types import Message

from licensing_service.api.messages import Incoming, Outgoing

METHODS = ("GET", "POST", "OPTIONS")
HEADERS = ("Content-Type", "Authorization")


def middleware_options(origins: Sequence[str]) -> dict[str, object]:
    """The one CORS configuration (also what the differential test wraps the app in)."""
    return {"allow_origins": list(origins), "allow_methods": METHODS, "allow_headers": HEADERS}


async def _no_app(scope: object, receive: object, send: object) -> None:
    raise AssertionError("the CORS policy never calls an app")


async def _keep(message: Message) -> None:
    del message  # the edited message is read back by the caller


class CorsPolicy:
    def __init__(self, origins: Sequence[str]) -> None:
        self._middleware = CORSMiddleware(_no_app, **middleware_options(origins))  # type: ignore[arg-type]

    @staticmethod
    def is_preflight(incoming: Incoming) -> bool:
        return (
            incoming.method == "OPTIONS"
            and incoming.header(b"origin") is not None
            and incoming.header(b"access-control-request-method") is not None
        )

    def preflight(self, incoming: Incoming) -> Outgoing:
        response = self._middleware.preflight_response(Headers(raw=incoming.headers))
        # Both paths frame the body themselves.
        headers = [h for h in response.raw_headers if h[0] != b"content-length"]
        return Outgoing(response.status_code, bytes(response.body), headers)

    def add_headers(self, incoming: Incoming, out: Outgoing) -> None:
        """Add to ``out`` the headers the middleware adds to a non-preflight answer."""
        message: Message = {
            "type": "http.response.start",
            "status": out.status,
            "headers": out.headers,
        }
        step = self._middleware.send(message, _keep, Headers(raw=incoming.headers))
        # It edits the message and awaits our ``_keep``, which never suspends:
        # one step runs it to the end.
        try:
            step.send(None)
        except StopIteration:
            out.headers = message["headers"]
            return
        step.close()
        raise RuntimeError("CORSMiddleware.send suspended; the CORS policy needs a look")
