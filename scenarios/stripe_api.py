"""Stripe's API on 127.0.0.1 for the service a rehearsal starts: the fake Stripe
(:class:`fixtures.stripe.fake_api.FakeStripe`) served over real HTTP.

The fake answers through a respx router (it was made for in-process clients);
here a small threaded HTTP server hands each request to that router, so a
service in another process can create checkout and portal sessions. The
rehearsal's Stripe faults are the service's own (``/__harness__/faults``), not
this server's: it stays healthy, as the real Stripe would while the service
pretends it is not.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import respx

from fixtures.stripe.fake_api import FakeStripe

API_KEY = "sk_test_rehearsal"


@contextlib.contextmanager
def fake_stripe_api() -> Iterator[str]:
    """The base URL of a fake Stripe API on loopback, for as long as the context lasts."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    fake = FakeStripe(base_url=base, api_key=API_KEY)
    router = respx.MockRouter(assert_all_mocked=True, assert_all_called=False)
    fake.install(router)
    server.router = router  # type: ignore[attr-defined]
    server.lock = threading.Lock()  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, name="fake-stripe", daemon=True)
    thread.start()
    try:
        yield base
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        address = self.server.server_address
        assert isinstance(address, tuple)  # an AF_INET server
        request = httpx.Request(
            self.command,
            f"http://{address[0]!s}:{address[1]}{self.path}",
            headers=list(self.headers.items()),
            content=body,
        )
        with self.server.lock:  # type: ignore[attr-defined]
            response: httpx.Response = self.server.router.handler(request)  # type: ignore[attr-defined]
        content = response.read()
        self.send_response(response.status_code)
        for name, value in response.headers.items():
            if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(name, value)
        self.send_header("content-length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    def log_message(self, format: str, *args: object) -> None:
        del format, args  # the rehearsal's timeline is the log


__all__ = ["API_KEY", "fake_stripe_api"]
