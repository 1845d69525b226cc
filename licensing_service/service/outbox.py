"""Email delivery from the outbox: at-least-once, retried with backoff, never lost.

Rows leave ``pending`` only as ``delivered`` or, for a permanent refusal
(a malformed address, a rejected sender), ``failed`` with the reason kept.
Transient failures are retried forever, with exponential backoff capped at
an hour, so a long provider outage delays mail but loses none.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from licensing_service.service.emails import render
from licensing_service.service.errors import Unavailable
from licensing_service.service.guard import StoreGuard
from licensing_service.service.ports import QueuedEmail, UnitOfWork

log = logging.getLogger(__name__)


class DeliveryError(Exception):
    def __init__(self, reason: str, *, permanent: bool) -> None:
        super().__init__(reason)
        self.permanent = permanent


class EmailTransport(Protocol):
    async def send(self, email: QueuedEmail, subject: str, text: str) -> str:
        """Deliver; return the provider's message id or raise DeliveryError."""
        ...


@dataclass(frozen=True, slots=True)
class Backoff:
    base: timedelta = timedelta(seconds=30)
    cap: timedelta = timedelta(hours=1)

    def after(self, attempts: int) -> timedelta:
        """Delay after the ``attempts``-th failure (1-based): 30 s, 60 s, 120 s ... 1 h."""
        delay: timedelta = self.base * (2 ** min(attempts - 1, 20))
        return min(self.cap, delay)


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    delivered: int = 0
    retried: int = 0
    failed: int = 0

    def __add__(self, other: DeliveryReport) -> DeliveryReport:
        return DeliveryReport(
            self.delivered + other.delivered,
            self.retried + other.retried,
            self.failed + other.failed,
        )


class Deliverer:
    def __init__(
        self,
        guard: StoreGuard,
        transport: EmailTransport,
        backoff: Backoff | None = None,
        lease: timedelta = timedelta(minutes=2),
    ) -> None:
        self.guard = guard
        self.transport = transport
        self.backoff = backoff or Backoff()
        # How long a claimed email is left to this process before another may send it.
        self.lease = lease

    async def run_once(self, now: datetime, batch: int = 50) -> DeliveryReport:
        try:
            with self.guard.transaction(now) as uow:
                due = uow.outbox.claim_due(now, batch, self.lease)
        except Unavailable:
            return DeliveryReport()
        report = DeliveryReport()
        for email in due:
            report = report + await self._deliver(email, now)
        return report

    async def _deliver(self, email: QueuedEmail, now: datetime) -> DeliveryReport:
        subject, text = render(email.email_type, email.payload)
        try:
            provider_id = await self.transport.send(email, subject, text)
        except DeliveryError as exc:
            failure = exc
        else:
            self._record(now, lambda uow: uow.outbox.mark_delivered(email.id, provider_id, now))
            return DeliveryReport(delivered=1)
        reason = str(failure)
        log.warning("email %s (%s) not delivered: %s", email.id, email.email_type, reason)
        if failure.permanent:
            self._record(now, lambda uow: uow.outbox.mark_failed(email.id, reason))
            return DeliveryReport(failed=1)
        when = now + self.backoff.after(email.attempts + 1)
        self._record(now, lambda uow: uow.outbox.mark_retry(email.id, reason, when))
        return DeliveryReport(retried=1)

    def _record(self, now: datetime, write: Callable[[UnitOfWork], None]) -> None:
        # A delivery whose outcome cannot be written stays pending and is sent
        # again: duplicate mail is better than lost mail.
        try:
            with self.guard.transaction(now) as uow:
                write(uow)
        except Unavailable:
            log.warning("could not record an email delivery outcome; it will be retried")
