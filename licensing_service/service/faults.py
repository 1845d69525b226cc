"""Injected faults (``serve --test-clock`` only): what is switched on, and the
decorators through which the database, Stripe, the email provider and the
webhook endpoint misbehave accordingly.

The composition root builds a :class:`Faults` only in harness mode. In
production there is none: the store keeps an inert :class:`DbFaults` whose
``active`` flag stays false (its hot path checks that one boolean, as it
did before), Stripe and the email transport are not wrapped, and the
webhook handler has no fail-once hook.

Why the database latency sleeps on the calling thread: the service runs its
SQLite units of work synchronously on the event loop, so a slow database
holds the loop for as long as it is slow. The injected latency does the
same, and a unit of work slower than the database timeout gives up after the
timeout with :class:`StorageUnavailable`, as a real busy wait does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from pydantic import BaseModel

from licensing_service.contract.faults import (
    DbFault,
    EmailFault,
    FaultsRequest,
    FaultsView,
    StripeFault,
    WebhookFault,
    active_names,
)
from licensing_service.service.errors import (
    DatabaseUnavailable,
    InvalidRequest,
    StorageUnavailable,
    StripeUnavailable,
)
from licensing_service.service.outbox import DeliveryError, EmailTransport
from licensing_service.service.ports import (
    BillingApi,
    CheckoutLink,
    CheckoutPrice,
    PortalLink,
    QueuedEmail,
)

log = logging.getLogger(__name__)

# What the view can show (contract: WebhookFault.fail_once's max_length).
MAX_PENDING_FAIL_ONCE = 100_000

Sleep = Callable[[float], None]
AsyncSleep = Callable[[float], Awaitable[None]]


class InjectedFailure(RuntimeError):
    """The webhook handler's injected failure (``webhook.fail_once``)."""


class WriteLock(Protocol):
    """Another connection that can hold the database's write lock."""

    def hold(self) -> None:
        """Take the write lock (raises StorageUnavailable if it cannot)."""
        ...

    def release(self) -> None: ...


class DbFaults:
    """The store's gate: ``active`` is the one flag its hot path reads.

    ``errors`` and ``latency_ms`` act here, on every unit of work and on the
    health ping; ``lock`` acts through a real second connection instead
    (:class:`WriteLock`), so it is not this gate's business."""

    __slots__ = ("_sleep", "active", "fault", "timeout_ms")

    def __init__(self, timeout_ms: int = 2000, sleep: Sleep = time.sleep) -> None:
        self.active = False
        self.fault = DbFault()
        self.timeout_ms = timeout_ms
        self._sleep = sleep

    def set(self, fault: DbFault) -> None:
        self.fault = fault
        self.active = fault.errors or fault.latency_ms > 0

    def enter(self) -> None:
        """Called as a unit of work begins while ``active``."""
        fault = self.fault
        if fault.errors:
            raise StorageUnavailable("database unavailable (injected fault)")
        if fault.latency_ms > self.timeout_ms:
            self._sleep(self.timeout_ms / 1000)
            raise StorageUnavailable(
                f"database did not answer within {self.timeout_ms} ms (injected latency)"
            )
        if fault.latency_ms:
            self._sleep(fault.latency_ms / 1000)


class Faults:
    """Every target's current fault, changed only by :meth:`apply`."""

    def __init__(self, db: DbFaults, lock: WriteLock | None = None) -> None:
        self.db = db
        self._lock = lock
        self._lock_held = False
        self.stripe = StripeFault()
        self.email = EmailFault()
        self._reject = False
        # One-shot: each id is consumed by its failure.
        self._fail_once: set[str] = set()

    @property
    def reject_webhooks(self) -> bool:
        return self._reject

    def view(self) -> FaultsView:
        webhook = WebhookFault(reject=self._reject, fail_once=sorted(self._fail_once))
        parts: dict[str, BaseModel] = {
            "db": self.db.fault,
            "stripe": self.stripe,
            "email": self.email,
            "webhook": webhook,
        }
        return FaultsView(
            db=self.db.fault,
            stripe=self.stripe,
            email=self.email,
            webhook=webhook,
            active=active_names(parts),
        )

    def active(self) -> list[str]:
        """The active names, without sorting the pending ids (``/health`` asks often)."""
        pending = ["pending"] if self._fail_once else []
        parts: dict[str, BaseModel] = {
            "db": self.db.fault,
            "stripe": self.stripe,
            "email": self.email,
            "webhook": WebhookFault(reject=self._reject, fail_once=pending),
        }
        return active_names(parts)

    def apply(self, request: FaultsRequest) -> FaultsView:
        """``clear`` first, then each named target's fault replaces the old one.

        ``webhook.fail_once`` adds to the ids still pending rather than
        replacing them: they are one-shot tokens the handler consumes, and a
        sender naming its next ids must not revive or drop another's.
        ``clear`` drops them."""
        before = self.active()
        adding = request.webhook.fail_once if request.webhook is not None else []
        pending = 0 if request.clear else len(self._fail_once)
        if pending + len(adding) > MAX_PENDING_FAIL_ONCE:
            raise InvalidRequest(
                [("webhook.fail_once", f"At most {MAX_PENDING_FAIL_ONCE} ids pending in all")]
            )
        if request.db is not None and request.db.lock:
            self._take_lock()  # first: a lock it cannot take must leave everything as it was
        if request.clear:
            if request.db is None:  # else replaced just below (a lock held stays held)
                self._set_db(DbFault())
            self.stripe = StripeFault()
            self.email = EmailFault()
            self._reject = False
            self._fail_once.clear()
        if request.db is not None:
            self._set_db(request.db)
        if request.stripe is not None:
            self.stripe = request.stripe
        if request.email is not None:
            self.email = request.email
        if request.webhook is not None:
            self._reject = request.webhook.reject
            self._fail_once.update(request.webhook.fail_once)
        view = self.view()
        if view.active != before or (request.webhook is not None and request.webhook.fail_once):
            # Names and a count only: event ids are not secret, but a long list is noise.
            log.info(
                "faults now: %s (webhook.fail_once pending: %d)",
                ", ".join(view.active) or "none",
                len(self._fail_once),
            )
        return view

    def _take_lock(self) -> None:
        if self._lock_held:
            return
        if self._lock is None:
            raise DatabaseUnavailable("No second connection to hold the lock with")
        try:
            self._lock.hold()
        except StorageUnavailable as exc:
            raise DatabaseUnavailable(f"Could not take the write lock: {exc}") from exc
        self._lock_held = True

    def _set_db(self, fault: DbFault) -> None:
        if fault.lock:
            self._take_lock()
        elif self._lock_held:
            assert self._lock is not None
            self._lock.release()
            self._lock_held = False
        self.db.set(fault)

    def check_webhook(self, event_id: str) -> None:
        """The webhook handler's hook, after an event's effects: fail once per listed id."""
        if event_id in self._fail_once:
            self._fail_once.discard(event_id)
            raise InjectedFailure(f"injected handler failure for {event_id}")

    def close(self) -> None:
        if self._lock_held and self._lock is not None:
            self._lock.release()
            self._lock_held = False


class FaultyBillingApi:
    """The Stripe port, failing or slow as ``faults.stripe`` says."""

    def __init__(
        self,
        inner: BillingApi,
        faults: Faults,
        timeout_seconds: float,
        sleep: AsyncSleep = asyncio.sleep,
    ) -> None:
        self._inner = inner
        self._faults = faults
        self._timeout = timeout_seconds
        self._sleep = sleep

    async def _before_call(self) -> None:
        fault = self._faults.stripe
        if fault.timeout or fault.latency_ms / 1000 > self._timeout:
            await self._sleep(self._timeout)
            raise StripeUnavailable(f"Stripe did not answer within {self._timeout} s (injected)")
        if fault.latency_ms:
            await self._sleep(fault.latency_ms / 1000)
        if fault.errors:
            raise StripeUnavailable("Stripe answered 500 (injected fault)")

    async def create_checkout_session(
        self, *, email: str, price: CheckoutPrice, success_url: str, cancel_url: str
    ) -> CheckoutLink:
        await self._before_call()
        return await self._inner.create_checkout_session(
            email=email, price=price, success_url=success_url, cancel_url=cancel_url
        )

    async def create_portal_session(
        self, *, stripe_customer_id: str | None, email: str, name: str | None, return_url: str
    ) -> PortalLink:
        await self._before_call()
        return await self._inner.create_portal_session(
            stripe_customer_id=stripe_customer_id, email=email, name=name, return_url=return_url
        )

    async def aclose(self) -> None:
        await self._inner.aclose()


class FaultyTransport:
    """The email provider, down as ``faults.email`` says: the outbox keeps
    the email and retries it with its backoff."""

    def __init__(self, inner: EmailTransport, faults: Faults) -> None:
        self._inner = inner
        self._faults = faults

    async def send(self, email: QueuedEmail, subject: str, text: str) -> str:
        if self._faults.email.errors:
            raise DeliveryError("provider answered 503 (injected fault)", permanent=False)
        return await self._inner.send(email, subject, text)
