"""Which HTTP path serves: every reason the accelerator turns itself off, said
at startup in one line, in /health and in /metrics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from uvicorn.logging import TRACE_LOG_LEVEL
from uvicorn.server import ServerState

from licensing_service.api import http_path, inline_http
from licensing_service.api.http_limits import LimitedHttpToolsProtocol
from licensing_service.api.http_path import TESTED_UVICORN, HttpPath
from licensing_service.api.inline_http import InlineHttpProtocol
from licensing_service.api.server import BASE_OPTIONS, http_path_of, uvicorn_options
from licensing_service.bootstrap import create_app
from licensing_service.contract import routes
from tests import conftest
from tests.live import EPOCH, LiveServer, ManualClock

TESTED = f"{TESTED_UVICORN}.0"


def path_with(tmp_path: Path, uvicorn_version: str = TESTED, **options: Any) -> HttpPath:
    settings = conftest.test_settings(tmp_path)
    config = uvicorn.Config("unused:app", **{**BASE_OPTIONS, **options})
    return http_path.decide(
        enabled=settings.inline_http,
        allow_untested=False,
        config=config,
        uvicorn_version=uvicorn_version,
    )


@pytest.fixture
def uvicorn_loggers() -> Iterator[None]:
    """Restores the uvicorn loggers a test changes (levels, handlers)."""
    names = ("uvicorn.error", "uvicorn.access")
    saved = {n: (logging.getLogger(n).level, list(logging.getLogger(n).handlers)) for n in names}
    yield
    for name, (level, handlers) in saved.items():
        logging.getLogger(name).setLevel(level)
        logging.getLogger(name).handlers = handlers


def test_our_options_on_the_tested_uvicorn_are_inline(tmp_path: Path) -> None:
    assert path_with(tmp_path) == HttpPath("inline", None)


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"limit_concurrency": 10}, "limit_concurrency"),
        ({"root_path": "/licensing"}, "root_path"),
        ({"proxy_headers": True}, "proxy_headers"),
        ({"http2": True}, "http2"),
        ({"access_log": True}, "access_log"),
    ],
)
def test_each_option_the_accelerator_lacks_turns_it_off_with_its_name(
    tmp_path: Path, options: dict[str, Any], reason: str
) -> None:
    path = path_with(tmp_path, **options)
    assert path.path == "asgi"
    assert path.reason is not None and path.reason.startswith(reason)


def test_trace_logging_turns_it_off(tmp_path: Path, uvicorn_loggers: None) -> None:
    del uvicorn_loggers
    logging.getLogger("uvicorn.error").setLevel(TRACE_LOG_LEVEL)
    assert (path_with(tmp_path).reason or "").startswith("trace logging")


def test_the_setting_turns_it_off(tmp_path: Path) -> None:
    settings = conftest.test_settings(tmp_path, inline_http=False)
    assert http_path_of(settings, {}) == HttpPath("asgi", "LH_INLINE_HTTP=false")
    assert uvicorn_options(settings)["http"].func is LimitedHttpToolsProtocol


def test_an_untested_uvicorn_turns_it_off_unless_the_upgrade_check_asks_to_try(
    tmp_path: Path,
) -> None:
    path = path_with(tmp_path, uvicorn_version="0.99.1")
    assert path.path == "asgi"
    assert path.reason == (
        f"uvicorn 0.99.1 is not the tested {TESTED_UVICORN}.x"
        " (scripts/test-uvicorn-latest measures a newer one)"
    )
    # "0.540" is not the "0.54" series.
    assert path_with(tmp_path, uvicorn_version=TESTED_UVICORN + "0").path == "asgi"
    config = uvicorn.Config("unused:app", **BASE_OPTIONS)
    trying = http_path.decide(
        enabled=True, allow_untested=True, config=config, uvicorn_version="0.99.1"
    )
    assert trying.inline


def test_options_are_decided_before_uvicorn_gets_the_protocol(tmp_path: Path) -> None:
    settings = conftest.test_settings(tmp_path)
    # Whatever uvicorn runs this (scripts/test-uvicorn-latest runs the newest).
    tried = uvicorn_options(settings, allow_untested_uvicorn=True)
    assert tried["http"].func is InlineHttpProtocol
    limited = uvicorn_options(settings, allow_untested_uvicorn=True, limit_concurrency=5)
    assert limited["http"].func is LimitedHttpToolsProtocol


def _protocol(tmp_path: Path, caplog: pytest.LogCaptureFixture, **options: Any) -> Any:
    app = create_app(conftest.test_settings(tmp_path), clock=ManualClock(EPOCH), background=False)
    config = uvicorn.Config(app, **{**BASE_OPTIONS, **options})
    config.load()

    async def build() -> InlineHttpProtocol:
        return InlineHttpProtocol(config, ServerState(), {}, _loop=asyncio.get_running_loop())

    with caplog.at_level(logging.WARNING, logger=inline_http.__name__):
        return asyncio.run(build())


def test_the_protocol_handed_an_unsupported_config_serves_asgi_and_says_so_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inline_http, "_reported", set())
    assert _protocol(tmp_path, caplog)._dispatcher is not None
    assert not caplog.records
    for _ in range(2):
        assert _protocol(tmp_path, caplog, limit_concurrency=3)._dispatcher is None
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1
    assert "limit_concurrency" in warnings[0]


def test_the_protocol_refuses_an_app_uvicorn_wrapped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inline_http, "_reported", set())
    # proxy_headers wraps the loaded app; the option check names it first.
    protocol = _protocol(tmp_path, caplog, proxy_headers=True)
    assert protocol._dispatcher is None
    assert "proxy_headers" in caplog.records[0].getMessage()
    # Any other wrapper: the loaded app has no dispatcher to answer from.
    plain = uvicorn.Config("unused:app", **BASE_OPTIONS)
    assert inline_http._dispatcher_for(plain, object()) is None
    assert "object, not the service's dispatcher" in caplog.records[-1].getMessage()


def path_info(server: LiveServer) -> list[str]:
    text = httpx.get(f"{server.url}{routes.METRICS}").text
    return [line for line in text.splitlines() if line.startswith("licensing_http_path_info{")]


def test_health_and_metrics_show_the_inline_path(live: Callable[..., LiveServer]) -> None:
    srv = live()
    assert srv.app.http_path.inline
    assert httpx.get(f"{srv.url}{routes.HEALTH}").json()["http"] == {
        "path": "inline",
        "reason": None,
    }
    assert path_info(srv) == ['licensing_http_path_info{path="inline",reason=""} 1.0']


def test_health_and_metrics_show_asgi_and_why(live: Callable[..., LiveServer]) -> None:
    srv = live({"limit_concurrency": 100})
    reason = srv.app.http_path.reason
    assert reason is not None and reason.startswith("limit_concurrency")
    assert httpx.get(f"{srv.url}{routes.HEALTH}").json()["http"] == {
        "path": "asgi",
        "reason": reason,
    }
    assert path_info(srv) == [f'licensing_http_path_info{{path="asgi",reason="{reason}"}} 1.0']


def test_startup_logs_exactly_one_line_naming_the_path(
    live: Callable[..., LiveServer], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        live(inline_http=False)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("HTTP path:")]
    assert lines == ["HTTP path: ASGI (inline accelerator off: LH_INLINE_HTTP=false)"]
    caplog.clear()
    with caplog.at_level(logging.INFO):
        live()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("HTTP path:")]
    assert lines == ["HTTP path: inline accelerator (synchronous routes answered in the protocol)"]
