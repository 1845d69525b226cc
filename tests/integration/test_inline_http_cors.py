"""CORS with the inline accelerator on, compared with Starlette's CORSMiddleware.

The same preflight and simple requests go (a) over a raw socket to the
service with the accelerator on, (b) over a raw socket with it off (ASGI),
and (c) in process to the service's dispatcher wrapped in Starlette's
``CORSMiddleware`` with the same configuration (how CORS was served before);
status and every CORS header must agree, and so must a preflight's body.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.middleware.cors import CORSMiddleware

from licensing_service.api.cors import middleware_options
from licensing_service.bootstrap import create_app
from licensing_service.contract import routes
from tests import conftest
from tests.integration.test_inline_http import Conn, count_inline, post
from tests.live import EPOCH, LiveServer, ManualClock

SHOP = "https://shop.example"
ELSEWHERE = "https://evil.example"
CORS_HEADERS = (
    "access-control-allow-origin",
    "access-control-allow-methods",
    "access-control-allow-headers",
    "access-control-allow-credentials",
    "access-control-max-age",
    "access-control-expose-headers",
    "vary",
)

Answer = tuple[int, dict[str, str], bytes]


def preflight(path: str, origin: str | None, method: str | None, headers: str | None) -> bytes:
    head = [f"OPTIONS {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Length: 0"]
    if origin is not None:
        head.append(f"Origin: {origin}")
    if method is not None:
        head.append(f"Access-Control-Request-Method: {method}")
    if headers is not None:
        head.append(f"Access-Control-Request-Headers: {headers}")
    return ("\r\n".join(head) + "\r\n\r\n").encode()


def get(path: str, origin: str | None) -> bytes:
    head = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1"]
    if origin is not None:
        head.append(f"Origin: {origin}")
    return ("\r\n".join(head) + "\r\n\r\n").encode()


def origin_header(origin: str | None) -> tuple[str, ...]:
    return () if origin is None else (f"Origin: {origin}",)


REQUESTS: dict[str, bytes] = {
    "preflight allowed": preflight(routes.VALIDATE_UNIFIED, SHOP, "POST", "content-type"),
    "preflight two headers": preflight(
        routes.VALIDATE_UNIFIED, SHOP, "POST", "Content-Type, Authorization"
    ),
    "preflight no headers": preflight(routes.HEALTH_LIVE, SHOP, "GET", None),
    "preflight bad method": preflight(routes.VALIDATE_UNIFIED, SHOP, "PUT", None),
    "preflight bad header": preflight(routes.VALIDATE_UNIFIED, SHOP, "POST", "x-custom"),
    "preflight bad origin": preflight(routes.VALIDATE_UNIFIED, ELSEWHERE, "POST", None),
    "preflight unknown path": preflight("/nowhere", SHOP, "POST", None),
    "options without preflight headers": preflight(routes.VALIDATE_UNIFIED, SHOP, None, None),
    "options without origin": preflight(routes.VALIDATE_UNIFIED, None, "POST", None),
    "simple allowed": get(routes.HEALTH_LIVE, SHOP),
    "simple bad origin": get(routes.HEALTH_LIVE, ELSEWHERE),
    "simple no origin": get(routes.HEALTH_LIVE, None),
    "post allowed": post(routes.VALIDATE_UNIFIED, b"{not json", *origin_header(SHOP)),
    "post bad origin": post(routes.VALIDATE_UNIFIED, b"{not json", *origin_header(ELSEWHERE)),
    "post no origin": post(routes.VALIDATE_UNIFIED, b"{not json"),
    "unknown path allowed": get("/nowhere", SHOP),
}
ORIGIN_SETTINGS = {"listed": f"{SHOP},https://admin.example", "any": "*"}


def parse_request(raw: bytes) -> tuple[str, str, list[tuple[bytes, bytes]], bytes]:
    head, body = raw.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ")
    headers = [
        (k.strip().lower().encode(), v.strip().encode())
        for k, v in (line.split(":", 1) for line in lines[1:])
    ]
    return method, path, headers, body


def through_starlette(app: Any, raw: bytes) -> Answer:
    """One request to an ASGI app in process, as uvicorn would hand it over."""
    method, path, headers, body = parse_request(raw)
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    start, content = sent[0], b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, content


def cors_part(answer: Answer, request: str) -> tuple[int, dict[str, str], bytes | None]:
    status, headers, body = answer
    # A preflight's body is the middleware's text; other bodies carry request ids.
    keep_body = request.startswith("preflight") and status in (200, 400)
    return (
        status,
        {h: headers[h] for h in CORS_HEADERS if h in headers},
        (body if keep_body else None),
    )


@pytest.fixture(params=sorted(ORIGIN_SETTINGS))
def origins(request: pytest.FixtureRequest) -> str:
    return ORIGIN_SETTINGS[request.param]


@pytest.fixture
def servers(tmp_path: Path, origins: str) -> Iterator[dict[str, Any]]:
    inline = LiveServer(conftest.test_settings(tmp_path / "a", cors_origins=origins))
    asgi = LiveServer(
        conftest.test_settings(tmp_path / "b", cors_origins=origins, inline_http=False)
    )
    for srv in (inline, asgi):
        srv.start()
    reference_app = create_app(
        conftest.test_settings(tmp_path / "c"), clock=ManualClock(EPOCH), background=False
    )
    options = middleware_options([o.strip() for o in origins.split(",")])
    reference = CORSMiddleware(reference_app.dispatcher, **options)  # type: ignore[arg-type]
    yield {"inline": inline, "asgi": asgi, "reference": reference}
    for srv in (inline, asgi):
        srv.stop()


def over_socket(server: LiveServer, raw: bytes) -> Answer:
    conn = Conn(server)
    try:
        conn.send(raw)
        return conn.response()
    finally:
        conn.close()


def test_cors_on_both_paths_answers_as_starlettes_middleware(servers: dict[str, Any]) -> None:
    assert servers["inline"].app.http_path.inline  # CORS no longer turns it off
    assert not servers["asgi"].app.http_path.inline
    for name, raw in REQUESTS.items():
        expected = cors_part(through_starlette(servers["reference"], raw), name)
        for path in ("inline", "asgi"):
            got = cors_part(over_socket(servers[path], raw), name)
            assert got == expected, f"{name} on the {path} path"


def test_preflight_and_simple_requests_are_answered_on_the_fast_path(
    tmp_path: Path,
) -> None:
    srv = LiveServer(conftest.test_settings(tmp_path, cors_origins=SHOP)).start()
    try:
        seen = count_inline(srv)
        conn = Conn(srv)
        conn.send(REQUESTS["preflight allowed"])
        status, headers, body = conn.response()
        assert (status, body) == (200, b"OK")
        assert headers["access-control-allow-origin"] == SHOP
        assert "POST" in headers["access-control-allow-methods"]
        assert "content-type" in headers["access-control-allow-headers"].lower()
        # Then the simple request, on the same kept-alive connection.
        conn.send(REQUESTS["simple allowed"])
        status, headers, _ = conn.response()
        assert status == 200
        assert headers["access-control-allow-origin"] == SHOP
        assert headers["vary"] == "Origin"
        conn.send(REQUESTS["simple bad origin"])
        status, headers, _ = conn.response()
        assert status == 200
        assert "access-control-allow-origin" not in headers
        assert headers["vary"] == "Origin"
        conn.close()
        assert seen == [
            f"OPTIONS {routes.VALIDATE_UNIFIED}",
            f"GET {routes.HEALTH_LIVE}",
            f"GET {routes.HEALTH_LIVE}",
        ]
    finally:
        srv.stop()


def test_without_cors_configured_no_cors_header_is_added(server: LiveServer) -> None:
    answer: Callable[[str], Answer] = lambda name: over_socket(server, REQUESTS[name])  # noqa: E731
    for name in ("simple allowed", "post allowed"):
        _, headers, _ = answer(name)
        assert not {h for h in CORS_HEADERS if h in headers}, name
    assert answer("preflight allowed")[0] == 405
