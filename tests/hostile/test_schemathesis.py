"""schemathesis against the service's own /openapi.json: no 5xx, and every
response matches the spec (status documented, body of the documented schema).

The normal suite runs 4 examples per operation (~670 requests, ~4 s);
``LH_FUZZ_EXAMPLES=N`` runs N, and from 60 on (1,232 requests) the test
demands at least 1,000. The figures are in docs/hostile-input.md.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from licensing_service.contract import routes
from scenarios.hostile_schema import FAULT_ROUTES, run_schemathesis
from scenarios.hostile_service import Service

EXAMPLES = int(os.environ.get("LH_FUZZ_EXAMPLES", "4"))

# Hundreds of generated requests per operation: the slow set (scripts/test --all).
pytestmark = pytest.mark.slow


def test_the_service_answers_every_generated_request_as_its_spec_says(service: Service) -> None:
    run = run_schemathesis(service.url, examples=EXAMPLES)
    assert run.server_errors == 0, run.answered
    assert run.exit_code == 0, run.output[-4000:]
    # The fuzzer reached the service: 4 examples gave 672 requests, 60 gave
    # 1,232 (the coverage phase is the same few hundred in both).
    least = 1000 if EXAMPLES >= 60 else 500
    assert run.requests >= least, run.answered
    assert run.generated >= least


def test_no_fault_route_is_fuzzed(service: Service) -> None:
    spec = httpx.get(service.url + routes.OPENAPI).json()
    operations = [(path, m) for path, methods in spec["paths"].items() for m in methods]
    faulty = [op for op in operations if op[0] in FAULT_ROUTES]
    assert faulty  # the spec has fault routes to leave out
    run = run_schemathesis(service.url, examples=1)
    selected = re.search(r"Selected: (\d+)/(\d+)", run.output)
    assert selected is not None, run.output[-2000:]
    # schemathesis leaves the document's own route out of its total; the rest
    # of what it did not select is exactly the fault routes.
    assert int(selected[2]) - int(selected[1]) == len(faulty)
    for path, _ in faulty:
        assert path not in run.output


# ------------------------------------------------------- a lying target fails

SPEC = {
    "openapi": "3.1.0",
    "info": {"title": "planted", "version": "1"},
    "paths": {
        "/thing": {
            "get": {
                "responses": {
                    "200": {
                        "description": "a thing",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["name"],
                                    "properties": {"name": {"type": "string"}},
                                }
                            }
                        },
                    }
                }
            }
        }
    },
}


@pytest.fixture(params=["schema", "5xx"])
def lying_target(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """Documents 200 ``{"name": str}`` and answers 200 ``{"name": 42}``
    ("schema"), or 500 ("5xx"); its /metrics counts the 500s."""
    served = {"n": 0, "errors": 0}
    lie = request.param

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/openapi.json":
                self._send(200, json.dumps(SPEC).encode(), "application/json")
            elif self.path == "/metrics":
                labels = 'method="GET",route="/thing",status="500"'
                line = f"licensing_http_requests_total{{{labels}}} {served['errors']}.0\n"
                self._send(200, line.encode(), "text/plain")
            elif lie == "schema":
                self._send(200, b'{"name": 42}', "application/json")
            else:
                served["errors"] += 1
                self._send(500, b'{"name": "x"}', "application/json")

        def _send(self, status: int, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("content-type", kind)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            del format, args

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield lie, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_target_that_breaks_its_spec_fails(lying_target: tuple[str, str]) -> None:
    lie, url = lying_target
    run = run_schemathesis(url, examples=3)
    assert run.exit_code != 0
    assert not run.passed
    if lie == "schema":
        assert run.server_errors == 0
        assert "Response violates schema" in run.output, run.output[-2000:]
    else:
        assert run.server_errors > 0
        assert "Server error" in run.output, run.output[-2000:]
