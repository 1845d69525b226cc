"""uvicorn, configured once for the CLI and the tests alike.

The stack: our dispatcher (``api/asgi.py``) on uvicorn with uvloop and
httptools, plus the optional inline accelerator (``api/inline_http.py``),
which uvicorn is handed as its protocol only when ``api/http_path.py``
finds nothing it would not implement.

Tried and measured worse: coalescing each response's head and body into one
socket write on the ASGI path (the extra loop callback cost more than the
saved syscall).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import uvicorn

from licensing_service.api import http_path
from licensing_service.api.http_limits import HttpLimits, LimitedHttpToolsProtocol
from licensing_service.api.http_path import HttpPath
from licensing_service.api.inline_http import InlineHttpProtocol
from licensing_service.config import Settings

BASE_OPTIONS: dict[str, Any] = {
    "loop": "uvloop",
    "access_log": False,
    "log_config": None,
    "lifespan": "on",
    # X-Forwarded-For is honoured only with LH_TRUST_FORWARDED_FOR (see Handlers).
    "proxy_headers": False,
    "server_header": False,  # says nothing a client needs; costs a header per response
}


def uvicorn_options(
    settings: Settings, *, allow_untested_uvicorn: bool = False, **extra: Any
) -> dict[str, Any]:
    """Our options, then ``extra``; the accelerator protocol only on the inline path.
    ``options["http"]`` is a protocol factory (a ``partial`` of the class, with
    the settings' ``HttpLimits``), which uvicorn calls as it would the class."""
    options = {**BASE_OPTIONS, **extra}
    inline = http_path_of(settings, options, allow_untested_uvicorn=allow_untested_uvicorn).inline
    # httptools parsing either way, with the same limits; inline, our synchronous
    # routes answered without ASGI.
    protocol = InlineHttpProtocol if inline else LimitedHttpToolsProtocol
    options["http"] = partial(protocol, limits=limits_of(settings))
    return options


def limits_of(settings: Settings) -> HttpLimits:
    return HttpLimits(
        header_timeout=settings.header_timeout_seconds,
        body_timeout=settings.body_timeout_seconds,
        max_header_bytes=settings.max_header_bytes,
    )


def http_path_of(
    settings: Settings, options: dict[str, Any], *, allow_untested_uvicorn: bool = False
) -> HttpPath:
    """The path uvicorn will serve with ``options`` (built as ``uvicorn_options`` does)."""
    # A Config (not loaded: nothing is imported or bound) reads uvicorn's own defaults.
    config = uvicorn.Config("unused:app", **{**BASE_OPTIONS, **options, "http": "httptools"})
    return http_path.decide(
        enabled=settings.inline_http,
        allow_untested=allow_untested_uvicorn,
        config=config,
    )
