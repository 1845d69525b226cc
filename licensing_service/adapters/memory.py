"""In-memory implementation of the storage ports, for unit tests and tools.

Stateful and faithful to the SQLite adapter where the service can tell
(``tests/contract/test_repositories.py`` runs the same checks on both):

* a transaction's writes are undone when it ends with an exception, and
  validation stamps taken by a failed flush are kept for the next one;
* what SQLite enforces with constraints raises
  :class:`~licensing_service.service.errors.ConstraintViolation` here: one
  claim per webhook event, one active session per license, unique emails,
  tokens and session ids, sessions only for existing licenses; the outbox's
  dedupe key and the refund id are "insert if absent", as ``ON CONFLICT DO
  NOTHING`` is;
* two stores built on one :class:`MemoryTables` behave like two worker
  processes on one database file: each sees the other's commits, and the
  ``license_changes`` feed reaches the other's customer view.

:attr:`MemoryStore.faults` rehearses an outage (every scope refused or slowed,
through the same :class:`~licensing_service.service.faults.DbFaults` gate as
the SQLite adapter), :attr:`MemoryStore.fail_transactions`
a database that reads but cannot write; :attr:`MemoryStore.scopes_opened`
counts scopes, so a test can prove that a path did not touch the database.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Literal

from licensing_service.adapters.sqltime import opt_to_db, to_db
from licensing_service.domain.billing import BillingState
from licensing_service.domain.credentials import normalize_email
from licensing_service.domain.sessions import SessionRecord, SessionStatus
from licensing_service.domain.stripe_events import Refund
from licensing_service.domain.subscription import SubscriptionStatus
from licensing_service.service.customer_view import CustomerView
from licensing_service.service.errors import ConstraintViolation, StorageUnavailable
from licensing_service.service.faults import DbFaults
from licensing_service.service.ports import (
    AuditEntry,
    CustomerRecord,
    FailureRow,
    NewCustomer,
    NewEmail,
    QueuedEmail,
    WebhookEventRow,
)


class NestedUnit(RuntimeError):
    """A scope opened while another is open (a bug in the caller)."""


@dataclass(slots=True)
class CustomerRow:
    record: CustomerRecord
    stripe_customer_id: str | None = None
    payment_failures: int = 0


@dataclass(slots=True)
class SessionRow:
    record: SessionRecord
    fingerprint: str | None
    client_address: str | None
    ended_at: datetime | None = None


@dataclass(slots=True)
class EventRow:
    event_type: str
    row: WebhookEventRow
    error: str | None = None
    customer_id: int | None = None


@dataclass(slots=True)
class EmailRow:
    email: NewEmail
    created_at: datetime
    next_attempt_at: datetime
    status: str = "pending"
    attempts: int = 0
    last_error: str | None = None
    provider_id: str | None = None
    delivered_at: datetime | None = None


@dataclass(slots=True)
class MemoryTables:
    """The "database file": what every store built on it shares."""

    customers: dict[int, CustomerRow] = field(default_factory=dict)
    sessions: dict[str, SessionRow] = field(default_factory=dict)
    events: dict[str, EventRow] = field(default_factory=dict)
    billing: dict[str, BillingState] = field(default_factory=dict)
    emails: dict[int, EmailRow] = field(default_factory=dict)
    audit: list[AuditEntry] = field(default_factory=list)
    refunds: dict[str, int | None] = field(default_factory=dict)
    license_changes: list[str] = field(default_factory=list)
    failures: list[FailureRow] = field(default_factory=list)
    next_id: int = 1
    # Bumped by every commit; a store that sees it move knows someone else committed.
    version: int = 0

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id - 1


def _customer_record(customer_id: int, new: NewCustomer) -> CustomerRecord:
    return CustomerRecord(
        id=customer_id,
        email=new.email,
        name=new.name,
        unlock_token=new.unlock_token,
        subscription_status=new.subscription_status,
        subscription_id=new.subscription_id,
        stripe_session_id=new.stripe_session_id,
        machine_fingerprint=None,
        current_period_end=new.current_period_end,
        next_billing_date=new.next_billing_date,
        last_validation=None,
        last_seen=None,
    )


class MemoryLicenses:
    def __init__(self, store: MemoryStore) -> None:
        self._store = store

    def _rows(self) -> dict[int, CustomerRow]:
        return self._store.tables.customers

    def _read(self, row: CustomerRow | None) -> CustomerRecord | None:
        return None if row is None else self._store.view.overlay(row.record)

    def _update(self, customer_id: int, **changes: Any) -> None:
        row = self._rows().get(customer_id)
        if row is not None:
            row.record = replace(row.record, **changes)

    def by_email(self, email: str) -> CustomerRecord | None:
        return self._read(next((r for r in self._rows().values() if r.record.email == email), None))

    def by_id(self, customer_id: int) -> CustomerRecord | None:
        return self._read(self._rows().get(customer_id))

    def insert(self, customer: NewCustomer, now: datetime) -> int:
        del now
        for row in self._rows().values():
            if row.record.email == customer.email:
                raise ConstraintViolation("UNIQUE constraint failed: customers.email")
            if row.record.unlock_token == customer.unlock_token:
                raise ConstraintViolation("UNIQUE constraint failed: customers.unlock_token")
        customer_id = self._store.tables.new_id()
        self._rows()[customer_id] = CustomerRow(
            _customer_record(customer_id, customer), customer.stripe_customer_id
        )
        return customer_id

    def record_validation(self, customer_id: int, now: datetime) -> None:
        self._store.view.stamp(customer_id, now)

    def flush_validations(self, limit: int | None = None) -> int:
        batch = self._store.view.take_stamps(limit)
        for customer_id, when in batch.items():
            self._update(customer_id, last_validation=when, last_seen=when)
        return len(batch)

    def set_fingerprint(self, customer_id: int, fingerprint: str) -> None:
        self._update(customer_id, machine_fingerprint=fingerprint)

    def set_status(self, customer_id: int, status: str, now: datetime) -> None:
        del now
        self._update(customer_id, subscription_status=status)


class MemorySessions:
    def __init__(self, store: MemoryStore) -> None:
        self._store = store

    def _rows(self) -> dict[str, SessionRow]:
        return self._store.tables.sessions

    def get(self, session_id: str) -> SessionRecord | None:
        row = self._rows().get(session_id)
        return None if row is None else row.record

    def open_for(self, customer_id: int) -> list[SessionRecord]:
        return [
            r.record
            for r in self._rows().values()
            if r.record.customer_id == customer_id and r.record.status == SessionStatus.ACTIVE
        ]

    def _check_one_active(self, record: SessionRecord) -> None:
        if record.status != SessionStatus.ACTIVE:
            return
        for other in self.open_for(record.customer_id):
            if other.session_id != record.session_id:
                raise ConstraintViolation("UNIQUE constraint failed: active_sessions.customer_id")

    def start(
        self,
        record: SessionRecord,
        fingerprint: str | None,
        client_address: str | None,
        now: datetime,
    ) -> None:
        existing = self._rows().get(record.session_id)
        if existing is not None and existing.record.customer_id != record.customer_id:
            raise ConstraintViolation("UNIQUE constraint failed: active_sessions.session_id")
        if record.customer_id not in self._store.tables.customers:
            raise ConstraintViolation("FOREIGN KEY constraint failed")
        stored = replace(record, last_heartbeat=now)
        self._check_one_active(stored)
        self._rows()[record.session_id] = SessionRow(stored, fingerprint, client_address)

    def set_status(self, session_ids: Sequence[str], status: str, now: datetime) -> None:
        for session_id in session_ids:
            row = self._rows().get(session_id)
            if row is not None:
                updated = replace(row.record, status=status)
                self._check_one_active(updated)
                row.record, row.ended_at = updated, now

    def touch(self, session_id: str, now: datetime) -> None:
        row = self._rows().get(session_id)
        if row is not None:
            row.record = replace(row.record, last_heartbeat=now)

    def count_alive(self, since: datetime) -> int:
        return sum(
            1
            for r in self._rows().values()
            if r.record.status == SessionStatus.ACTIVE and r.record.last_heartbeat > since
        )


class MemoryBilling:
    def __init__(self, store: MemoryStore) -> None:
        self._store = store

    def _tables(self) -> MemoryTables:
        return self._store.tables

    def webhook_event(self, event_id: str) -> WebhookEventRow | None:
        found = self._tables().events.get(event_id)
        return None if found is None else found.row

    def claim_event(
        self,
        event_id: str,
        event_type: str,
        created: datetime,
        now: datetime,
        lease_until: datetime,
        *,
        retry: bool,
    ) -> None:
        del created
        events = self._tables().events
        if retry:
            found = events.get(event_id)
            if found is not None:
                row = found.row
                found.row = replace(
                    row,
                    status="processing",
                    retry_count=row.retry_count + 1,
                    lease_until=lease_until,
                )
                found.error = None
            return
        if event_id in events:
            raise ConstraintViolation("UNIQUE constraint failed: webhook_events.stripe_event_id")
        events[event_id] = EventRow(
            event_type, WebhookEventRow("processing", None, 0, lease_until, now)
        )

    def finish_event(
        self, event_id: str, outcome: str, customer_id: int | None, now: datetime
    ) -> None:
        del now
        found = self._tables().events.get(event_id)
        if found is not None:
            found.row = replace(found.row, status="completed", outcome=outcome, lease_until=None)
            found.customer_id = customer_id

    def fail_event(self, event_id: str, event_type: str, error: str, now: datetime) -> None:
        events = self._tables().events
        found = events.get(event_id)
        if found is None:
            events[event_id] = EventRow(
                event_type, WebhookEventRow("failed", None, 0, None, now), error[:500]
            )
            return
        found.row = replace(found.row, status="failed", lease_until=None)
        found.error = error[:500]

    def billing_state(self, stripe_customer_id: str) -> BillingState | None:
        return self._tables().billing.get(stripe_customer_id)

    def save_billing_state(
        self, stripe_customer_id: str, state: BillingState, now: datetime
    ) -> None:
        del now
        self._tables().billing[stripe_customer_id] = state

    def _find(self, test: Callable[[CustomerRow], bool]) -> CustomerRecord | None:
        for row in self._tables().customers.values():
            if test(row):
                return self._store.view.overlay(row.record)
        return None

    def license_for(self, stripe_customer_id: str, email: str | None) -> CustomerRecord | None:
        found = self._find(lambda r: r.stripe_customer_id == stripe_customer_id)
        if found is None and email is not None:
            wanted = normalize_email(email)
            found = self._find(lambda r: r.record.email == wanted and r.stripe_customer_id is None)
        return found

    def link(
        self,
        customer_id: int,
        stripe_customer_id: str,
        now: datetime,
        *,
        checkout_session_id: str | None = None,
        name: str | None = None,
    ) -> None:
        del now
        row = self._tables().customers.get(customer_id)
        if row is None:
            return
        row.stripe_customer_id = stripe_customer_id
        record = row.record
        row.record = replace(
            record,
            stripe_session_id=checkout_session_id or record.stripe_session_id,
            name=record.name if record.name is not None else name,
        )

    def apply_billing(self, customer_id: int, state: BillingState, now: datetime) -> None:
        del now
        assert state.status is not None
        row = self._tables().customers.get(customer_id)
        if row is None:
            return
        active = state.status is SubscriptionStatus.ACTIVE
        row.payment_failures = state.payment_failures
        row.record = replace(
            row.record,
            subscription_status=state.status.value,
            current_period_end=state.period_end,
            next_billing_date=state.period_end if active else None,
            subscription_id=state.subscription_id or row.record.subscription_id,
        )

    def note_license_change(self, email: str, now: datetime) -> None:
        del now
        self._tables().license_changes.append(email)

    def prune_license_changes(self, before: datetime) -> int:
        """Kept: the in-memory feed lives only as long as the test that made it."""
        del before
        return 0

    def lock_batch(self, event_ids: Sequence[str], stripe_customer_ids: Sequence[str]) -> None:
        """Nothing to order: one unit of work at a time."""
        del event_ids, stripe_customer_ids

    def record_refund(self, customer_id: int | None, refund: Refund, now: datetime) -> bool:
        del now
        refunds = self._tables().refunds
        if refund.key in refunds:
            return False
        refunds[refund.key] = customer_id
        return True

    def stripe_customer_id(self, customer_id: int) -> str | None:
        row = self._tables().customers.get(customer_id)
        return None if row is None else row.stripe_customer_id


class MemoryOutbox:
    def __init__(self, store: MemoryStore) -> None:
        self._store = store

    def _rows(self) -> dict[int, EmailRow]:
        return self._store.tables.emails

    def enqueue(self, email: NewEmail, now: datetime) -> bool:
        key = email.dedupe_key
        if key is not None and any(r.email.dedupe_key == key for r in self._rows().values()):
            return False
        # Through JSON, as stored: what a reader gets back is a copy, never the caller's dict.
        stored = replace(email, payload=json.loads(json.dumps(email.payload, sort_keys=True)))
        self._rows()[self._store.tables.new_id()] = EmailRow(stored, now, now)
        return True

    def claim_due(self, now: datetime, limit: int, lease: timedelta) -> list[QueuedEmail]:
        due = sorted(
            (
                (row.next_attempt_at, email_id)
                for email_id, row in self._rows().items()
                if row.status == "pending" and row.next_attempt_at <= now
            )
        )[:limit]
        claimed = []
        for _, email_id in due:
            row = self._rows()[email_id]
            row.next_attempt_at = now + lease
            e = row.email
            claimed.append(
                QueuedEmail(
                    email_id,
                    e.email_type,
                    e.recipient,
                    e.customer_id,
                    dict(e.payload),
                    row.attempts,
                )
            )
        return claimed

    def mark_delivered(self, email_id: int, provider_id: str, now: datetime) -> None:
        row = self._rows().get(email_id)
        if row is not None:
            row.status, row.provider_id, row.delivered_at = "delivered", provider_id, now
            row.attempts += 1
            row.last_error = None

    def mark_retry(self, email_id: int, error: str, next_attempt: datetime) -> None:
        row = self._rows().get(email_id)
        if row is not None:
            row.attempts += 1
            row.last_error, row.next_attempt_at = error, next_attempt

    def mark_failed(self, email_id: int, error: str) -> None:
        row = self._rows().get(email_id)
        if row is not None:
            row.status, row.last_error = "failed", error
            row.attempts += 1

    def listing(self, limit: int, recipients: Sequence[str] = ()) -> list[dict[str, Any]]:
        rows = [
            (email_id, row)
            for email_id, row in sorted(self._rows().items())
            if not recipients or row.email.recipient in recipients
        ][:limit]
        return [
            {
                "id": email_id,
                "customer_id": row.email.customer_id,
                "email_type": row.email.email_type,
                "recipient": row.email.recipient,
                "payload": dict(row.email.payload),
                "delivery_status": row.status,
                "attempts": row.attempts,
                "next_attempt_at": to_db(row.next_attempt_at),
                "last_error": row.last_error,
                "created_at": to_db(row.created_at),
                "delivered_at": opt_to_db(row.delivered_at),
            }
            for email_id, row in rows
        ]

    def pending_count(self) -> int:
        return sum(1 for row in self._rows().values() if row.status == "pending")


class MemoryAudit:
    def __init__(self, store: MemoryStore) -> None:
        self._store = store

    def record(self, entries: Sequence[AuditEntry]) -> None:
        self._store.tables.audit.extend(entries)


class MemoryRateLimits:
    def __init__(self, store: MemoryStore) -> None:
        self._store = store

    def record_failures(self, rows: Sequence[tuple[str, str, datetime]], replica: str) -> None:
        tables = self._store.tables
        for scope, key, at in rows:
            tables.failures.append(FailureRow(tables.new_id(), scope, key, at, replica))

    def failures_after(self, seq: int, limit: int) -> list[FailureRow]:
        return [row for row in self._store.tables.failures if row.seq > seq][:limit]

    def last_seq(self) -> int:
        failures = self._store.tables.failures
        return failures[-1].seq if failures else 0

    def prune(self, before: datetime) -> int:
        tables = self._store.tables
        kept = [row for row in tables.failures if row.at >= before]
        pruned = len(tables.failures) - len(kept)
        tables.failures = kept
        return pruned


class MemoryUnitOfWork:
    __slots__ = ("_store", "audit", "billing", "licenses", "outbox", "rate_limits", "sessions")

    def __init__(self, store: MemoryStore) -> None:
        self._store = store
        self.licenses = MemoryLicenses(store)
        self.sessions = MemorySessions(store)
        self.billing = MemoryBilling(store)
        self.outbox = MemoryOutbox(store)
        self.audit = MemoryAudit(store)
        self.rate_limits = MemoryRateLimits(store)

    def ping(self) -> None:
        self._store.ping()

    def savepoint(self) -> _MemorySavepoint:
        return _MemorySavepoint(self._store)


class _MemorySavepoint:
    __slots__ = ("_before", "_store")

    def __init__(self, store: MemoryStore) -> None:
        self._store = store
        self._before: MemoryTables | None = None

    def __enter__(self) -> None:
        if not self._store.in_scope:
            raise NestedUnit("a savepoint outside a unit of work")
        self._before = copy.deepcopy(self._store.tables)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> Literal[False]:
        if kind is not None and self._before is not None:
            _restore(self._store.tables, self._before)
        return False


class MemoryStore:
    """A :class:`~licensing_service.service.ports.Store` held in memory.

    Single-threaded, like the serving connection, and stricter than SQLite
    in one way: a scope opened inside another raises :class:`NestedUnit`.
    On the one shared connection a nested scope would commit or roll back
    its caller's work, so the service must never open one."""

    def __init__(
        self,
        tables: MemoryTables | None = None,
        faults: DbFaults | None = None,
        view: CustomerView | None = None,
    ) -> None:
        self.tables = tables if tables is not None else MemoryTables()
        self.faults = faults or DbFaults()
        # Holds no fresh rows here (the tables are read each time); stamps and
        # last-known-good records are kept and invalidated as on SQLite.
        self.view = view if view is not None else CustomerView()
        self.scopes_opened = 0
        self.in_scope = False
        # Reads answer, write transactions fail (a full disk, a lock held elsewhere).
        self.fail_transactions = False
        self._uow = MemoryUnitOfWork(self)
        self._feed_cursor = len(self.tables.license_changes)
        self._seen_version = self.tables.version

    def transaction(self) -> _MemoryScope:
        return _MemoryScope(self, atomic=True)

    def autocommit(self) -> _MemoryScope:
        return _MemoryScope(self, atomic=False)

    def ping(self) -> None:
        if self.faults.active:
            self.faults.enter()

    def close(self) -> None:
        """Nothing to release; kept for the port."""

    def _notice_others(self) -> None:
        if self.tables.version == self._seen_version:
            return
        self._seen_version = self.tables.version
        changes = self.tables.license_changes[self._feed_cursor :]
        self._feed_cursor = len(self.tables.license_changes)
        self.view.invalidate_all()
        if changes:
            self.view.invalidate(changes)

    def _committed(self) -> None:
        self.tables.version += 1
        self._seen_version = self.tables.version
        # Our own notes are not news to us (SQLite's data_version ignores our commits).
        self._feed_cursor = len(self.tables.license_changes)


class _MemoryScope:
    __slots__ = ("_atomic", "_before", "_store")

    def __init__(self, store: MemoryStore, *, atomic: bool) -> None:
        self._store = store
        self._atomic = atomic
        self._before: MemoryTables | None = None

    def __enter__(self) -> MemoryUnitOfWork:
        store = self._store
        if store.in_scope:
            raise NestedUnit("a unit of work was opened inside another")
        store.ping()
        if self._atomic and store.fail_transactions:
            raise StorageUnavailable("cannot write (injected fault)")
        store.scopes_opened += 1
        store.in_scope = True
        store._notice_others()
        if self._atomic:
            self._before = copy.deepcopy(store.tables)
        return store._uow

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> Literal[False]:
        store = self._store
        store.in_scope = False
        if kind is None:
            store.view.committed()
        else:
            if self._before is not None:
                _restore(store.tables, self._before)
            store.view.rolled_back()
        store._committed()
        return False


def _restore(tables: MemoryTables, before: MemoryTables) -> None:
    # In place: every store sharing these tables must see the rollback.
    for column in fields(MemoryTables):
        setattr(tables, column.name, getattr(before, column.name))
