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

from typing import Any

import uvicorn

from licensing_service.api import http_path
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
    """Our options, then ``extra``; the accelerator protocol only on the inline path."""
    options = {**BASE_OPTIONS, **extra}
    inline = http_path_of(settings, options, allow_untested_uvicorn=allow_untested_uvicorn).inline
    # httptools parsing either way; inline, our synchronous routes answered without ASGI.
    options["http"] = InlineHttpProtocol if inline else "httptools"
    return options


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
