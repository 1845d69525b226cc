"""The composition root: the one place that builds and wires everything."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import orjson
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from licensing_service.adapters.clock import MovableClock, OffsetClock, SharedFileOffset
from licensing_service.adapters.email import ResendTransport, SinkTransport
from licensing_service.adapters.sqlite_migrations import migrate
from licensing_service.adapters.sqlite_store import FaultSwitch, SqliteStore
from licensing_service.api import openapi
from licensing_service.api import responses as r
from licensing_service.api.app import Handlers, new_request_id
from licensing_service.api.edge import EdgeMiddleware
from licensing_service.api.harness import HarnessHandlers
from licensing_service.api.metrics import Metrics
from licensing_service.config import Settings
from licensing_service.contract import routes as paths
from licensing_service.contract.errors import ErrorCode
from licensing_service.contract.spec import routes_for
from licensing_service.domain.breaker import CircuitBreaker
from licensing_service.domain.rate_limit import FailureLimiter
from licensing_service.service.audit import AuditBuffer
from licensing_service.service.errors import LicensingError
from licensing_service.service.licensing import LicensingService, Limits
from licensing_service.service.outbox import Deliverer, EmailTransport
from licensing_service.service.ports import Clock
from licensing_service.service.snapshot import Snapshot

log = logging.getLogger(__name__)


class _Generic(LicensingError):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Parts:
    """What a test may want to reach inside a built application."""

    settings: Settings
    clock: Clock
    store: SqliteStore
    faults: FaultSwitch
    service: LicensingService
    metrics: Metrics
    deliverer: Deliverer


def open_store(settings: Settings, clock: Clock, faults: FaultSwitch) -> SqliteStore:
    settings.db.parent.mkdir(parents=True, exist_ok=True)
    store = SqliteStore(settings.db, faults=faults)
    migrate(store.connection(), clock.now())
    return store


def default_clock(settings: Settings) -> Clock:
    if not settings.test_clock:
        from licensing_service.adapters.clock import SystemClock

        return SystemClock()
    # Shared between worker processes, so all of them agree on the moved time.
    return OffsetClock(SharedFileOffset(test_clock_file(settings.db)))


def test_clock_file(db: Path) -> Path:
    return db.with_name(db.name + ".test-clock")


def build_service(settings: Settings, store: SqliteStore) -> LicensingService:
    window = timedelta(seconds=settings.rate_limit_window_seconds)
    return LicensingService(
        store,
        CircuitBreaker(
            settings.breaker_threshold, timedelta(seconds=settings.breaker_open_seconds)
        ),
        Limits(
            per_ip=FailureLimiter(settings.rate_limit_ip, window),
            per_email=FailureLimiter(settings.rate_limit_email, window),
        ),
        AuditBuffer(),
        Snapshot(),
    )


def build_transport(settings: Settings) -> tuple[EmailTransport, httpx.AsyncClient | None]:
    if settings.resend_api_key is None:
        return SinkTransport(settings.sink_path()), None
    client = httpx.AsyncClient(base_url=settings.resend_api_base, timeout=10.0)
    key = settings.resend_api_key.get_secret_value()
    return ResendTransport(client, key, settings.email_from), client


def create_app(
    settings: Settings,
    *,
    clock: Clock | None = None,
    transport: EmailTransport | None = None,
    background: bool = True,
) -> Starlette:
    """Build the service. ``background=False`` leaves the audit flusher and
    the email deliverer to the caller (tests drive them by hand)."""
    clock = clock or default_clock(settings)
    faults = FaultSwitch()
    store = open_store(settings, clock, faults)
    service = build_service(settings, store)
    client = None
    if transport is None:
        transport, client = build_transport(settings)
    deliverer = Deliverer(store, transport)
    metrics = Metrics(service, clock)
    handlers = Handlers(service, store, clock, settings)
    specs = routes_for(harness=settings.test_clock)
    spec_bytes = orjson.dumps(openapi.build(specs))

    async def openapi_route(request: Request) -> Response:
        del request
        return Response(spec_bytes, 200, media_type=r.JSON)

    async def metrics_route(request: Request) -> Response:
        del request
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(metrics.render(), 200, media_type=CONTENT_TYPE_LATEST)

    routes = [
        *handlers.routes(),
        Route(paths.OPENAPI, openapi_route, methods=["GET"]),
        Route(paths.METRICS, metrics_route, methods=["GET"]),
    ]
    if settings.test_clock:
        assert hasattr(clock, "advance"), "--test-clock needs a movable clock"
        movable: MovableClock = clock  # type: ignore[assignment]
        routes += HarnessHandlers(movable, store, faults).routes()

    def envelope(exc: LicensingError) -> bytes:
        return orjson.dumps(r.error_body(exc, new_request_id(), clock.now(), "-"))

    async def not_found(request: Request, exc: Exception) -> Response:
        del exc
        err = _Generic(ErrorCode.NOT_FOUND, f"No route {request.url.path}")
        return r.unified_error(err, new_request_id(), clock.now(), request.url.path)

    async def not_allowed(request: Request, exc: Exception) -> Response:
        del exc
        err = _Generic(ErrorCode.METHOD_NOT_ALLOWED, f"{request.method} not allowed here")
        return r.unified_error(err, new_request_id(), clock.now(), request.url.path)

    async def crashed(request: Request, exc: Exception) -> Response:
        rid = new_request_id()
        # The exception type and request id only: messages may quote input.
        log.error("unhandled %s on %s (request %s)", type(exc).__name__, request.url.path, rid)
        err = _Generic(ErrorCode.INTERNAL_ERROR, "Internal error; it has been logged")
        return r.unified_error(err, rid, clock.now(), request.url.path)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        del app
        tasks = []
        if background:
            tasks = [
                asyncio.create_task(
                    _every(settings.audit_flush_ms / 1000, lambda: _flush(service, clock))
                ),
                asyncio.create_task(
                    _every(settings.email_poll_seconds, lambda: deliverer.run_once(clock.now()))
                ),
            ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            service.flush_audit(clock.now())
            if client is not None:
                await client.aclose()
            store.close()

    middleware = [
        Middleware(
            EdgeMiddleware,
            metrics=metrics,
            max_body_bytes=settings.max_body_bytes,
            routes=frozenset(spec.path for spec in specs),
            too_large_body=envelope,
        )
    ]
    if settings.allowed_origins():
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=settings.allowed_origins(),
                allow_methods=["GET", "POST", "OPTIONS"],
                allow_headers=["Content-Type", "Authorization"],
            )
        )
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={404: not_found, 405: not_allowed, Exception: crashed},
        lifespan=lifespan,
    )
    app.state.parts = Parts(settings, clock, store, faults, service, metrics, deliverer)
    return app


async def _flush(service: LicensingService, clock: Clock) -> None:
    service.flush_audit(clock.now())


async def _every(seconds: float, job: object) -> None:
    while True:
        await asyncio.sleep(seconds)
        try:
            await job()  # type: ignore[operator]
        except Exception:
            log.exception("background job failed; it will run again")


def create_app_from_env() -> Starlette:
    """Factory for ``uvicorn --factory`` (worker processes)."""
    return create_app(Settings())
