"""The HTTP path a real `licensing-harness serve` reports: its startup line on
stderr, /health and /metrics agree."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from licensing_service.contract import routes
from tests.e2e.conftest import Served


def path_lines(served: Served) -> list[str]:
    return [line for line in served.log_text().splitlines() if "HTTP path:" in line]


def test_serve_says_once_that_the_accelerator_is_on(serve: Callable[..., Served]) -> None:
    served = serve()
    [line] = path_lines(served)
    assert line.endswith(
        "HTTP path: inline accelerator (synchronous routes answered in the protocol)"
    )
    assert httpx.get(served.url + routes.HEALTH).json()["http"] == {
        "path": "inline",
        "reason": None,
    }


def test_serve_says_once_why_the_accelerator_is_off(serve: Callable[..., Served]) -> None:
    served = serve(extra_env={"LH_INLINE_HTTP": "false"})
    [line] = path_lines(served)
    assert line.endswith("HTTP path: ASGI (inline accelerator off: LH_INLINE_HTTP=false)")
    metrics = httpx.get(served.url + routes.METRICS).text
    assert 'licensing_http_path_info{path="asgi",reason="LH_INLINE_HTTP=false"} 1.0' in metrics


def test_each_worker_says_its_path(serve: Callable[..., Served]) -> None:
    served = serve("--workers", "2")
    deadline = time.monotonic() + 20  # ready means one worker answers; the other may be starting
    while len(path_lines(served)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    lines = path_lines(served)
    assert len(lines) == 2
    assert all(
        line.endswith("HTTP path: inline accelerator (synchronous routes answered in the protocol)")
        for line in lines
    )
