"""uvicorn, configured once for the CLI and the tests alike.

Tried and measured worse: coalescing each response's head and body into one
socket write (the extra loop callback cost more than the saved syscall).
"""

from __future__ import annotations

from typing import Any

from licensing_service.api.inline_http import InlineHttpProtocol


def uvicorn_options(*, inline: bool = True) -> dict[str, Any]:
    return {
        "loop": "uvloop",
        # httptools parsing; with ``inline``, our synchronous routes answered without ASGI.
        "http": InlineHttpProtocol if inline else "httptools",
        "access_log": False,
        "log_config": None,
        "lifespan": "on",
        # X-Forwarded-For is honoured only with LH_TRUST_FORWARDED_FOR (see Handlers).
        "proxy_headers": False,
        "server_header": False,  # says nothing a client needs; costs a header per response
    }
