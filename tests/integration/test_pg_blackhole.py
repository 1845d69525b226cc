"""PostgreSQL behind a black hole: the path accepts and acknowledges, nothing
is forwarded or answered (``scenarios/proxy.py``, all on 127.0.0.1).

The server-side timeouts cannot fire (the server never sees the query), so
only the store's client-side deadline (``adapters/pg_deadline.py``) turns the
silence into StorageUnavailable. Before it, the first call that needed the
database hung the service for good, and it stayed hung after the path healed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from licensing_service.adapters.pg_deadline import DEADLINE_MARGIN_SECONDS
from licensing_service.contract import routes
from licensing_service.contract.models import Health, UnifiedSuccess
from scenarios.proxy import FaultProxy
from tests.conftest import Customer, add_customer
from tests.conftest import test_settings as settings_for
from tests.live import LiveServer
from tests.shapes import error_code, shaped

DB_TIMEOUT_MS = 300
# THE BOUND the store promises: a unit of work on a silent path fails within
# the statement timeout plus the margin (it waits at most the pool's timeout,
# LH_DB_TIMEOUT_MS, for a connection instead when none is ready).
BOUND_S = DB_TIMEOUT_MS / 1000 + DEADLINE_MARGIN_SECONDS
# What HTTP, the event loop and a busy shared machine add on top of it.
SLACK_S = 1.0
# The client's own patience: the old code never answered at all.
CLIENT_TIMEOUT_S = 5.0
# The pool reconnects in wall time (libpq's 2 s connect timeout, its backoff).
RECONNECT_WITHIN_S = 30.0


def proxied(url: str, port: int) -> str:
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@127.0.0.1:{port}" if userinfo else f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


@pytest.fixture
def proxy(pg_url: str) -> Iterator[FaultProxy]:
    parts = urlsplit(pg_url)
    with FaultProxy(upstream=(parts.hostname or "127.0.0.1", parts.port or 5432)) as made:
        yield made


@pytest.fixture
def server(pg_url: str, proxy: FaultProxy, tmp_path: Path) -> Iterator[LiveServer]:
    settings = settings_for(tmp_path, db=proxied(pg_url, proxy.port), db_timeout_ms=DB_TIMEOUT_MS)
    live = LiveServer(settings).start()
    yield live
    proxy.stop()  # first: frees a call the old code left hanging in the hole
    live.stop()


def validate(http: httpx.Client, c: Customer) -> httpx.Response:
    body = {"operation": "validate", "credentials": {"email": c.email, "token": c.token}}
    return http.post(routes.VALIDATE_UNIFIED, json=body)


def start_session(http: httpx.Client, c: Customer, sid: str) -> httpx.Response:
    creds = {"email": c.email, "token": c.token, "sessionId": sid}
    body = {
        "operation": "session",
        "action": "start",
        "credentials": creds,
        "device": {"machineFingerprint": "till-blackhole"},
    }
    return http.post(routes.VALIDATE_UNIFIED, json=body)


def timed(call: object) -> tuple[httpx.Response, float]:
    assert callable(call)
    started = time.perf_counter()
    answer = call()
    assert isinstance(answer, httpx.Response)
    return answer, time.perf_counter() - started


def test_a_black_holed_database_opens_the_breaker_and_the_service_recovers(
    server: LiveServer, proxy: FaultProxy
) -> None:
    known, never_seen = add_customer(server), add_customer(server)
    threshold = server.parts.settings.breaker_threshold
    with httpx.Client(base_url=server.url, timeout=CLIENT_TIMEOUT_S) as http:
        assert validate(http, known).status_code == 200  # seen: in the snapshot
        proxy.set(blackhole=True)

        # Each write needs the database: 503 within the bound, never a hang,
        # until the breaker has counted its threshold of failures.
        codes = []
        for attempt in range(threshold + 2):
            answer, took = timed(lambda n=attempt: start_session(http, known, f"bh-{n}"))
            assert answer.status_code == 503, answer.text
            assert "retry-after" in answer.headers
            assert took < BOUND_S + SLACK_S, (attempt, took)
            codes.append(error_code(answer))
        assert codes[:threshold] == ["DATABASE_ERROR"] * (threshold - 1) + [
            "CIRCUIT_BREAKER_OPEN"
        ], codes
        assert codes[threshold:] == ["CIRCUIT_BREAKER_OPEN"] * 2
        assert proxy.counters().bytes_dropped > 0  # the hole did swallow the calls

        # /health answers at once from a pool with no connection ready.
        health, took = timed(lambda: http.get(routes.HEALTH))
        assert health.status_code == 503 and took < BOUND_S + SLACK_S
        view = shaped(Health, health)
        assert view.circuitBreaker.state == "OPEN" and view.status == "unhealthy"

        degraded = validate(http, known)
        assert degraded.status_code == 200 and shaped(UnifiedSuccess, degraded).degraded is True
        assert validate(http, never_seen).status_code == 503

        # The open period passes (the injected clock): one trial, which fails within the bound.
        server.clock.advance(30)
        trial, took = timed(lambda: start_session(http, known, "bh-trial"))
        assert trial.status_code == 503 and took < BOUND_S + SLACK_S
        assert shaped(Health, http.get(routes.HEALTH)).circuitBreaker.state == "OPEN"

        # The path heals: the pool reconnects on its own, /health says so.
        proxy.set()
        deadline = time.monotonic() + RECONNECT_WITHIN_S
        status = "unhealthy"
        while status != "degraded" and time.monotonic() < deadline:
            time.sleep(0.1)  # the pool's reconnect runs in wall time
            status = shaped(Health, http.get(routes.HEALTH)).status
        assert status == "degraded", "the pool did not reconnect"

        server.clock.advance(30)
        recovered = start_session(http, known, "bh-after")
        assert recovered.status_code == 200, recovered.text
        assert shaped(Health, http.get(routes.HEALTH)).circuitBreaker.state == "CLOSED"
        assert validate(http, known).json()["degraded"] is False
        assert validate(http, never_seen).status_code == 200
