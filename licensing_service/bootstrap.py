"""The composition root: the one place that builds and wires everything."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.types import Receive, Scope, Send

from licensing_service.adapters.clock import (
    MovableClock,
    OffsetClock,
    SharedFileOffset,
    SystemClock,
)
from licensing_service.adapters.email import SinkTransport
from licensing_service.api import openapi
from licensing_service.api import render as r
from licensing_service.api.app import Handlers, new_request_id
from licensing_service.api.asgi import Dispatcher, Fallbacks, Incoming, Outgoing
from licensing_service.api.billing import BillingHandlers
from licensing_service.api.cors import CorsPolicy
from licensing_service.api.harness import HarnessHandlers
from licensing_service.api.http_path import HttpPath, reported_in_health
from licensing_service.api.metrics import Metrics
from licensing_service.config import Settings
from licensing_service.contract import routes as paths
from licensing_service.contract.errors import ErrorCode
from licensing_service.contract.spec import routes_for
from licensing_service.db_target import DbTarget, PostgresTarget
from licensing_service.domain.breaker import CircuitBreaker
from licensing_service.domain.rate_limit import FailureLimiter
from licensing_service.service.audit import AuditBuffer
from licensing_service.service.checkout import CheckoutService, ReturnUrls
from licensing_service.service.customer_view import CustomerView
from licensing_service.service.errors import LicensingError
from licensing_service.service.faults import (
    DbFaults,
    Faults,
    FaultyBillingApi,
    FaultyTransport,
    WriteLock,
)
from licensing_service.service.licensing import LicensingService, Limits
from licensing_service.service.outbox import Deliverer, EmailTransport
from licensing_service.service.ports import BillingApi, CheckoutPrice, Clock, Store
from licensing_service.service.shared_failures import SharedFailures
from licensing_service.service.webhook_batch import WebhookBatcher
from licensing_service.service.webhooks import WebhookService

if TYPE_CHECKING:
    import httpx

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
    store: Store
    faults: Faults | None  # harness mode (--test-clock) only
    service: LicensingService
    metrics: Metrics
    deliverer: Deliverer
    webhooks: WebhookService


def open_store(
    settings: Settings,
    clock: Clock,
    faults: DbFaults | None = None,
    view: CustomerView | None = None,
) -> Store:
    """The store ``settings.db`` names, migrated (the drivers load only when used),
    keeping ``view`` coherent (None: a view of its own, for tools that serve nothing)."""
    target = settings.db
    if isinstance(target, PostgresTarget):
        from licensing_service.adapters import pg_migrations
        from licensing_service.adapters.pg_store import PgStore, pool

        connections = pool(target.url, timeout_ms=settings.db_timeout_ms)
        try:
            with connections.connection() as conn:
                pg_migrations.migrate(conn, clock.now())
        except Exception:
            connections.close()
            raise
        return PgStore(connections, faults=faults, view=view)
    from licensing_service.adapters.sqlite_migrations import migrate
    from licensing_service.adapters.sqlite_store import SqliteStore

    target.path.parent.mkdir(parents=True, exist_ok=True)
    store = SqliteStore(
        target.path, faults=faults, view=view, busy_timeout_ms=settings.db_timeout_ms
    )
    migrate(store.connection(), clock.now())
    return store


def write_lock(target: DbTarget) -> WriteLock:
    """What holds the database's write lock for the ``db.lock`` fault."""
    if isinstance(target, PostgresTarget):
        from licensing_service.adapters.pg_lock import PgWriteLock

        return PgWriteLock(target.url)
    from licensing_service.adapters.sqlite_lock import SqliteWriteLock

    return SqliteWriteLock(target.path)


def default_clock(settings: Settings) -> Clock:
    if not settings.test_clock:
        from licensing_service.adapters.clock import SystemClock

        return SystemClock()
    # Shared between worker processes, so all of them agree on the moved time.
    # It lives beside the database (PostgreSQL: under var/), a directory that
    # may not exist yet.
    path = test_clock_file(settings.db)
    path.parent.mkdir(parents=True, exist_ok=True)
    return OffsetClock(SharedFileOffset(path))


def test_clock_file(db: DbTarget | Path) -> Path:
    if isinstance(db, Path):
        return db.with_name(db.name + ".test-clock")
    return db.state_dir() / (db.state_name() + ".test-clock")


def reset_test_clock(db: DbTarget | Path) -> None:
    """Back to real time, in place: the file is reset, not unlinked, because other
    processes on the same database (replicas, workers) keep it mapped, and a new
    file would give the starting process a clock of its own."""
    path = test_clock_file(db)
    if path.exists():
        SharedFileOffset(path).put(0)


def build_service(settings: Settings, store: Store, view: CustomerView) -> LicensingService:
    """``view``: the one the store keeps coherent."""
    window = timedelta(seconds=settings.rate_limit_window_seconds)
    return LicensingService(
        store,
        CircuitBreaker(
            settings.breaker_threshold,
            timedelta(seconds=settings.breaker_open_seconds),
            slow_call_s=settings.breaker_slow_call_ms / 1000
            if settings.breaker_slow_call_ms
            else None,
        ),
        Limits(
            per_ip=FailureLimiter(settings.rate_limit_ip, window),
            per_email=FailureLimiter(settings.rate_limit_email, window),
            shared=SharedFailures(window),
        ),
        AuditBuffer(),
        view,
    )


def build_webhooks(
    settings: Settings, service: LicensingService, faults: Faults | None
) -> WebhookService:
    return WebhookService(
        service,
        settings.webhook_secrets(),
        tolerance_seconds=settings.webhook_tolerance_seconds,
        lease=timedelta(seconds=settings.webhook_lease_seconds),
        fail_hook=faults.check_webhook if faults is not None else None,
    )


def build_billing_api(settings: Settings) -> BillingApi | None:
    if settings.stripe_secret_key is None:
        return None
    import stripe

    from licensing_service.adapters.stripe_api import StripeBilling

    # Otherwise the library writes an id under ~/.config and reports it to Stripe.
    stripe.enable_telemetry = False
    return StripeBilling(
        settings.stripe_secret_key.get_secret_value(),
        settings.stripe_api_base,
        timeout_seconds=settings.stripe_timeout_seconds,
        max_retries=settings.stripe_max_retries,
    )


def build_checkout(
    settings: Settings, service: LicensingService, api: BillingApi | None
) -> CheckoutService:
    price = CheckoutPrice(
        price_id=settings.stripe_price_id,
        unit_amount=settings.price_cents,
        currency=settings.price_currency,
    )
    urls = ReturnUrls(
        settings.checkout_success_url, settings.checkout_cancel_url, settings.portal_return_url
    )
    return CheckoutService(service, api, price, urls)


def build_transport(settings: Settings) -> tuple[EmailTransport, httpx.AsyncClient | None]:
    if settings.resend_api_key is None:
        return SinkTransport(settings.sink_path()), None
    # httpx only when Resend is configured: imported, it pulls in its optional
    # command line (click, pygments, rich where installed), ~4,000 objects more
    # for the garbage collector of every serving process.
    import httpx

    from licensing_service.adapters.email import ResendTransport

    client = httpx.AsyncClient(base_url=settings.resend_api_base, timeout=10.0)
    key = settings.resend_api_key.get_secret_value()
    return ResendTransport(client, key, settings.email_from), client


class LicensingApp:
    """The ASGI application, with its parts in reach of tests and tools.

    ``dispatcher`` is what the inline accelerator answers from; ``http_path``
    the path the serving code chose (logged at startup, shown by /health and
    /metrics)."""

    def __init__(self, dispatcher: Dispatcher, parts: Parts, http_path: HttpPath) -> None:
        self.dispatcher = dispatcher
        self.parts = parts
        self.http_path = http_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.dispatcher(scope, receive, send)


def create_app(
    settings: Settings,
    *,
    clock: Clock | None = None,
    transport: EmailTransport | None = None,
    billing_api: BillingApi | None = None,
    background: bool = True,
    http_path: HttpPath | None = None,
) -> LicensingApp:
    """Build the service. ``background=False`` leaves the audit flusher and
    the email deliverer to the caller (tests drive them by hand).
    ``http_path`` is the path the caller serves it by; by default, the one
    ``licensing-harness serve`` gives these settings."""
    if http_path is None:
        from licensing_service.api.server import http_path_of

        http_path = http_path_of(settings, {})
    clock = clock or default_clock(settings)
    db_faults = DbFaults(settings.db_timeout_ms) if settings.test_clock else None
    # What this process knows about customers: the store keeps it coherent
    # with other processes' commits, the service answers from it.
    view = CustomerView()
    store = open_store(settings, clock, db_faults, view)
    # Harness mode only: in production nothing is wrapped and nothing checked.
    faults = Faults(db_faults, write_lock(settings.db)) if db_faults is not None else None
    service = build_service(settings, store, view)
    client = None
    if transport is None:
        transport, client = build_transport(settings)
    if faults is not None:
        transport = FaultyTransport(transport, faults)
    deliverer = Deliverer(service.guard, transport)
    metrics = Metrics(service, clock, http_path, faults)
    handlers = Handlers(service, store, clock, settings)
    webhooks = build_webhooks(settings, service, faults)
    billing_api = billing_api or build_billing_api(settings)
    if billing_api is not None and faults is not None:
        billing_api = FaultyBillingApi(billing_api, faults, settings.stripe_timeout_seconds)
    checkout = build_checkout(settings, service, billing_api)
    specs = routes_for(harness=settings.test_clock)
    spec_bytes = orjson.dumps(openapi.build(specs))

    def openapi_route(request: Incoming) -> Outgoing:
        del request
        return Outgoing(200, spec_bytes, [r.JSON_TYPE])

    def metrics_route(request: Incoming) -> Outgoing:
        del request
        return Outgoing(200, metrics.render(), [(b"content-type", CONTENT_TYPE_LATEST.encode())])

    routes = handlers.routes()
    routes[paths.HEALTH]["GET"] = reported_in_health(handlers.health, http_path)
    routes.update(BillingHandlers(handlers, WebhookBatcher(webhooks), checkout).routes())
    routes[paths.OPENAPI] = {"GET": openapi_route}
    routes[paths.METRICS] = {"GET": metrics_route}
    if faults is not None:
        assert hasattr(clock, "advance"), "--test-clock needs a movable clock"
        movable: MovableClock = clock  # type: ignore[assignment]
        harness = HarnessHandlers(movable, service.guard, faults)
        routes.update(harness.routes())
        harness.wrap(routes)

    def fail(code: ErrorCode, message: str, request: Incoming) -> Outgoing:
        return r.unified_error(_Generic(code, message), new_request_id(), clock.now(), request.path)

    def crashed(request: Incoming, exc: Exception) -> Outgoing:
        out = fail(ErrorCode.INTERNAL_ERROR, "Internal error; it has been logged", request)
        # The exception type and request id only: messages may quote input.
        rid = orjson.loads(out.body)["requestId"]
        log.error("unhandled %s on %s (request %s)", type(exc).__name__, request.path, rid)
        return out

    fallbacks = Fallbacks(
        not_found=lambda req: fail(ErrorCode.NOT_FOUND, f"No route {req.path}", req),
        not_allowed=lambda req: fail(
            ErrorCode.METHOD_NOT_ALLOWED, f"{req.method} not allowed here", req
        ),
        too_large=lambda req: fail(
            ErrorCode.PAYLOAD_TOO_LARGE,
            f"Request body exceeds {settings.max_body_bytes} bytes",
            req,
        ),
        crashed=crashed,
    )

    @contextlib.asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        log.info("%s", http_path.describe())
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
            service.share_failures(clock.now())
            service.flush_audit(clock.now())
            if client is not None:
                await client.aclose()
            if billing_api is not None:
                await billing_api.aclose()
            if faults is not None:
                faults.close()  # a held write lock would outlive the server otherwise
            store.close()

    origins = settings.allowed_origins()
    dispatcher = Dispatcher(
        routes,
        metrics=metrics,
        max_body_bytes=settings.max_body_bytes,
        fallbacks=fallbacks,
        lifespan=lifespan,
        # On both paths, so that CORS leaves the inline accelerator on.
        cors=CorsPolicy(origins) if origins else None,
    )
    parts = Parts(settings, clock, store, faults, service, metrics, deliverer, webhooks)
    return LicensingApp(dispatcher, parts, http_path)


FLUSH_CHUNK = 64


async def _flush(service: LicensingService, clock: Clock, wall: Clock | None = None) -> None:
    """Write the group commit in chunks, letting requests run in between:
    one ~4 ms block every 50 ms showed up in the p99."""
    service.share_failures(clock.now())  # the other replicas' failed attempts, and ours
    # At most every ten minutes. The feed's day of retention holds in real time
    # too: a harness clock moved days ahead (time travel) must not prune rows
    # that a replica reading every 50 ms of real time has not read yet (it would
    # then forget every license, its last-known-good records included).
    real = (wall or SystemClock()).now()
    service.prune_license_changes(min(clock.now(), real))
    for _ in range(10_000):  # bounded even if the buffers refill as fast as we write
        if not service.has_backlog() or not service.flush_audit(clock.now(), FLUSH_CHUNK):
            return
        await asyncio.sleep(0)


async def _every(seconds: float, job: object) -> None:
    while True:
        await asyncio.sleep(seconds)
        try:
            await job()  # type: ignore[operator]
        except Exception:
            log.exception("background job failed; it will run again")


def create_app_from_env() -> LicensingApp:
    """Factory for ``uvicorn --factory`` (worker processes)."""
    from licensing_service import logs

    settings = Settings()
    logs.configure(settings.log_level)  # workers log through the redacting formatter too
    return create_app(settings)
