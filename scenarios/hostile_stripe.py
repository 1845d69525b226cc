"""The fixtures' stateful fake of Stripe's API, served over real HTTP on
127.0.0.1, so a service subprocess's checkout and portal calls have a Stripe
to reach (the fake itself answers through respx, in-process only)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import respx

from fixtures.stripe.fake_api import FakeStripe

_HOP_BY_HOP = frozenset({"connection", "transfer-encoding", "content-length", "keep-alive"})


@contextlib.contextmanager
def fake_stripe_server() -> Iterator[str]:
    """Serve a fresh ``FakeStripe`` until the block ends; yields its base URL."""
    fake = FakeStripe()
    # Never started, so it patches nothing: only its handler is called.
    router = respx.MockRouter(assert_all_mocked=True)
    fake.install(router)
    lock = threading.Lock()  # the fake keeps plain dicts

    class Handler(BaseHTTPRequestHandler):
        def _forward(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            request = httpx.Request(
                self.command,
                fake.base_url + self.path,
                headers=[(k, v) for k, v in self.headers.items() if k.lower() != "host"],
                content=body,
            )
            with lock:
                response = router.handler(request)
            payload = response.read()
            self.send_response(response.status_code)
            for name, value in response.headers.items():
                if name.lower() not in _HOP_BY_HOP:
                    self.send_header(name, value)
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_DELETE = _forward

        def log_message(self, format: str, *args: object) -> None:
            del format, args  # quiet: the service's log is the one to read

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
