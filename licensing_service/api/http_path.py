"""Which HTTP path answers requests, the inline accelerator or ASGI, and why.

The accelerator (``api/inline_http.py``) is a pure speed-up: with it off,
every request takes the dispatcher's ASGI path and gets the same answer. It
runs only where it implements everything the server was asked to do, so each
uvicorn option or setting it does not implement turns it off with a reason,
decided once at startup (``server.uvicorn_options``), logged in one line,
shown by ``/health`` (``"http"``) and ``/metrics``
(``licensing_http_path_info``). The protocol checks the same reasons again
for the config it is really given, so a hand-built uvicorn config cannot
turn on what this module would have refused.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import orjson
import uvicorn
from uvicorn.logging import TRACE_LOG_LEVEL

from licensing_service.api.messages import Incoming, Outgoing

# The minor series the accelerator's tests have passed on; pyproject.toml pins
# the same. scripts/test-uvicorn-latest measures the newest release against it.
TESTED_UVICORN = "0.54"


@dataclass(frozen=True, slots=True)
class HttpPath:
    path: Literal["inline", "asgi"]
    # Why the accelerator is off (None when it is on).
    reason: str | None = None

    @property
    def inline(self) -> bool:
        return self.path == "inline"

    def describe(self) -> str:
        if self.inline:
            return "HTTP path: inline accelerator (synchronous routes answered in the protocol)"
        return f"HTTP path: ASGI (inline accelerator off: {self.reason})"

    def as_json(self) -> dict[str, str | None]:
        return {"path": self.path, "reason": self.reason}


INLINE = HttpPath("inline")


def asgi(reason: str) -> HttpPath:
    return HttpPath("asgi", reason)


def decide(
    *,
    enabled: bool,
    allow_untested: bool,
    config: uvicorn.Config,
    uvicorn_version: str = uvicorn.__version__,
) -> HttpPath:
    """The path for a service with these settings, served by this (unloaded) config.
    ``allow_untested`` is for scripts/test-uvicorn-latest only: a deployment
    never runs the accelerator on a uvicorn its tests have not passed on."""
    if not enabled:
        return asgi("LH_INLINE_HTTP=false")
    if not _tested(uvicorn_version) and not allow_untested:
        return asgi(
            f"uvicorn {uvicorn_version} is not the tested {TESTED_UVICORN}.x"
            " (scripts/test-uvicorn-latest measures a newer one)"
        )
    reason = unsupported_option(config)
    return INLINE if reason is None else asgi(reason)


def unsupported_option(config: uvicorn.Config) -> str | None:
    """The first uvicorn option in ``config`` the accelerator does not implement."""
    if config.limit_concurrency is not None:
        return "limit_concurrency is set (the accelerator does not count connections)"
    if config.root_path:
        return "root_path is set (the accelerator routes on the raw path)"
    if config.proxy_headers:
        return "proxy_headers is on (uvicorn's ProxyHeadersMiddleware wraps the app)"
    if getattr(config, "http2", False):
        return "http2 is on (served by another protocol)"
    if logging.getLogger("uvicorn.error").getEffectiveLevel() <= TRACE_LOG_LEVEL:
        return "trace logging is on (uvicorn's MessageLoggerMiddleware wraps the app)"
    if config.access_log:
        return "access_log is on (the accelerator writes no access log)"
    return None


def _tested(version: str) -> bool:
    return version == TESTED_UVICORN or version.startswith(TESTED_UVICORN + ".")


def reported_in_health(
    health: Callable[[Incoming], Outgoing], path: HttpPath
) -> Callable[[Incoming], Outgoing]:
    """``/health``'s handler with ``"http": {"path", "reason"}`` added to its body."""
    extra = path.as_json()

    def with_path(request: Incoming) -> Outgoing:
        out = health(request)
        body = orjson.loads(out.body)
        body["http"] = extra
        out.body = orjson.dumps(body)
        return out

    return with_path
