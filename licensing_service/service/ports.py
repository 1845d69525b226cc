"""What the service needs from the outside world, as Protocols.

Storage is synchronous on purpose: the SQLite adapter answers in
microseconds, and calling it directly from the event loop is roughly twice
as fast as hopping to a thread pool (see README, "Speed").
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from licensing_service.domain.billing import BillingState
from licensing_service.domain.sessions import SessionRecord
from licensing_service.domain.stripe_events import Refund


class Clock(Protocol):
    def now(self) -> datetime: ...


@dataclass(frozen=True, slots=True)
class CustomerRecord:
    id: int
    email: str
    name: str | None
    unlock_token: str
    subscription_status: str
    subscription_id: str | None
    stripe_session_id: str | None
    machine_fingerprint: str | None
    current_period_end: datetime | None
    next_billing_date: datetime | None
    last_validation: datetime | None
    last_seen: datetime | None


@dataclass(frozen=True, slots=True)
class NewCustomer:
    email: str
    name: str | None
    unlock_token: str
    subscription_status: str
    stripe_customer_id: str | None = None
    stripe_session_id: str | None = None
    subscription_id: str | None = None
    current_period_start: datetime | None = None
    current_period_end: datetime | None = None
    next_billing_date: datetime | None = None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    action: str
    outcome: str
    customer_id: int | None
    request_id: str | None
    client_address: str | None
    at: datetime
    # Never tokens or raw fingerprints: only what an auditor may read.
    details: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class NewEmail:
    email_type: str
    recipient: str
    customer_id: int | None
    payload: dict[str, Any]
    dedupe_key: str | None = None


@dataclass(frozen=True, slots=True)
class QueuedEmail:
    id: int
    email_type: str
    recipient: str
    customer_id: int | None
    payload: dict[str, Any]
    attempts: int


@dataclass(frozen=True, slots=True)
class WebhookEventRow:
    status: str  # processing | completed | failed
    outcome: str | None
    retry_count: int
    lease_until: datetime | None
    received_at: datetime


@dataclass(frozen=True, slots=True)
class CheckoutLink:
    session_id: str
    url: str


@dataclass(frozen=True, slots=True)
class PortalLink:
    url: str
    customer_id: str  # the Stripe customer used (created if it was missing)
    created_customer: bool


@dataclass(frozen=True, slots=True)
class CheckoutPrice:
    price_id: str | None  # a configured Stripe Price; None sends inline price_data
    unit_amount: int = 2000  # cents: €20/month by default
    currency: str = "eur"
    interval: str = "month"
    product_name: str = "POSPal subscription"


class BillingApi(Protocol):
    """Stripe's API, as the service uses it (adapters.stripe_api.StripeBilling)."""

    async def create_checkout_session(
        self, *, email: str, price: CheckoutPrice, success_url: str, cancel_url: str
    ) -> CheckoutLink: ...
    async def create_portal_session(
        self, *, stripe_customer_id: str | None, email: str, name: str | None, return_url: str
    ) -> PortalLink: ...
    async def aclose(self) -> None: ...


class BillingRepository(Protocol):
    """Webhook claims and the billing state, inside the same unit of work as
    the license changes they cause."""

    def webhook_event(self, event_id: str) -> WebhookEventRow | None: ...
    def claim_event(
        self,
        event_id: str,
        event_type: str,
        created: datetime,
        now: datetime,
        lease_until: datetime,
        *,
        retry: bool,
    ) -> None: ...
    def finish_event(
        self, event_id: str, outcome: str, customer_id: int | None, now: datetime
    ) -> None: ...
    def fail_event(self, event_id: str, event_type: str, error: str, now: datetime) -> None: ...
    def billing_state(self, stripe_customer_id: str) -> BillingState | None: ...
    def save_billing_state(
        self, stripe_customer_id: str, state: BillingState, now: datetime
    ) -> None: ...
    def license_for(self, stripe_customer_id: str, email: str | None) -> CustomerRecord | None:
        """The license linked to this Stripe customer; else, by email, one not
        yet linked to any Stripe customer (a seeded or imported license)."""
        ...

    def link(
        self,
        customer_id: int,
        stripe_customer_id: str,
        now: datetime,
        *,
        checkout_session_id: str | None = None,
        name: str | None = None,
    ) -> None: ...
    def apply_billing(self, customer_id: int, state: BillingState, now: datetime) -> None: ...
    def note_license_change(self, email: str, now: datetime) -> None:
        """Tell other worker processes to forget what they hold about this license."""
        ...

    def prune_license_changes(self, before: datetime) -> int:
        """Drop the notes written before ``before`` (a process that had not read
        them yet then forgets every license); returns how many went."""
        ...

    def lock_batch(self, event_ids: Sequence[str], stripe_customer_ids: Sequence[str]) -> None:
        """Take now, in one global order, the locks a batch of events would
        otherwise take one event at a time (two batches on two replicas taking
        them in crossed orders deadlock); a no-op where writers never overlap."""
        ...

    def record_refund(self, customer_id: int | None, refund: Refund, now: datetime) -> bool: ...
    def stripe_customer_id(self, customer_id: int) -> str | None: ...


class LicenseRepository(Protocol):
    """Customers (licenses): the rows every validation reads."""

    def by_email(self, email: str) -> CustomerRecord | None: ...
    def by_id(self, customer_id: int) -> CustomerRecord | None: ...
    def insert(self, customer: NewCustomer, now: datetime) -> int: ...
    def record_validation(self, customer_id: int, now: datetime) -> None:
        """May be deferred by the adapter until ``flush_validations``."""
        ...

    def flush_validations(self, limit: int | None = None) -> int:
        """Write deferred validation stamps (at most ``limit``); returns how many."""
        ...

    def set_fingerprint(self, customer_id: int, fingerprint: str) -> None: ...
    def set_status(self, customer_id: int, status: str, now: datetime) -> None: ...


class SessionRepository(Protocol):
    """Device sessions; at most one ``active`` per license is a constraint."""

    def get(self, session_id: str) -> SessionRecord | None: ...
    def open_for(self, customer_id: int) -> list[SessionRecord]: ...
    def start(
        self,
        record: SessionRecord,
        fingerprint: str | None,
        client_address: str | None,
        now: datetime,
    ) -> None:
        """Insert, or restart the license's own session of that id; raises
        ConstraintViolation (at the latest when the unit ends) for a second
        active session of one license."""
        ...

    def set_status(self, session_ids: Sequence[str], status: str, now: datetime) -> None: ...
    def touch(self, session_id: str, now: datetime) -> None: ...
    def count_alive(self, since: datetime) -> int: ...


class OutboxRepository(Protocol):
    """Emails waiting to be delivered (``email_log``)."""

    def enqueue(self, email: NewEmail, now: datetime) -> bool:
        """Queue an email; False when its dedupe key was already queued."""
        ...

    def claim_due(self, now: datetime, limit: int, lease: timedelta) -> list[QueuedEmail]: ...
    def mark_delivered(self, email_id: int, provider_id: str, now: datetime) -> None: ...
    def mark_retry(self, email_id: int, error: str, next_attempt: datetime) -> None: ...
    def mark_failed(self, email_id: int, error: str) -> None: ...
    def listing(self, limit: int, recipients: Sequence[str] = ()) -> list[dict[str, Any]]:
        """Rows as the harness shows them (timestamps as stored)."""
        ...

    def pending_count(self) -> int: ...


@dataclass(frozen=True, slots=True)
class FailureRow:
    """One failed credential attempt, as every replica shares it."""

    seq: int  # the feed's order (commit order on SQLite)
    scope: str  # "email" | "ip"
    key: str
    at: datetime
    replica: str  # which process recorded it (it already counted it)


class RateLimitRepository(Protocol):
    """Failed credential attempts, shared by every replica on the database, so
    that a brute force spread over several replicas meets one limit."""

    def record_failures(self, rows: Sequence[tuple[str, str, datetime]], replica: str) -> None:
        """Add ``(scope, key, at)`` failures recorded by ``replica``."""
        ...

    def failures_after(self, seq: int, limit: int) -> list[FailureRow]:
        """The feed: failures with ``seq`` above the given one, in order."""
        ...

    def last_seq(self) -> int: ...
    def prune(self, before: datetime) -> int:
        """Forget failures older than ``before`` (outside every window)."""
        ...


class AuditRepository(Protocol):
    def record(self, entries: Sequence[AuditEntry]) -> None: ...


class UnitOfWork(Protocol):
    """One database transaction (or one autocommit scope), reached by topic."""

    @property
    def licenses(self) -> LicenseRepository: ...
    @property
    def sessions(self) -> SessionRepository: ...
    @property
    def billing(self) -> BillingRepository: ...
    @property
    def outbox(self) -> OutboxRepository: ...
    @property
    def audit(self) -> AuditRepository: ...
    @property
    def rate_limits(self) -> RateLimitRepository: ...

    def ping(self) -> None:
        """Reach the database itself (a cached read proves nothing)."""
        ...

    def savepoint(self) -> AbstractContextManager[None]:
        """A nested scope inside a transaction: on an error its writes alone are
        undone (the error is raised on, as StorageUnavailable or
        ConstraintViolation for what the database refused) and the transaction
        goes on; on normal exit its writes join the transaction's. Lets one
        commit carry many independent changes (the webhook group commit)."""
        ...


class Store(Protocol):
    """Where units of work come from: one implementation per database.

    Each store is handed the process's :class:`CustomerView` and keeps it
    coherent: at the start of a unit it looks for other processes' commits
    and says what they changed (``invalidate``, ``invalidate_all``); it reports
    its own writes and how each unit ended."""

    def transaction(self) -> AbstractContextManager[UnitOfWork]:
        """A write transaction; commits on normal exit, rolls back on error
        (raising ConstraintViolation or StorageUnavailable for what the
        database refused)."""
        ...

    def autocommit(self) -> AbstractContextManager[UnitOfWork]:
        """Statements that each commit alone (a read, then at most one write)."""
        ...

    def ping(self) -> None: ...

    def close(self) -> None: ...
