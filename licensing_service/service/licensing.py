"""Validation and device sessions: the pure rules composed with storage.

Every public method takes a ``Call`` (request id, client address, ``now``
read once from the injected clock) and either returns an outcome or raises a
:class:`~licensing_service.service.errors.LicensingError`. Nothing here
awaits: a transaction never spans an ``await``, so requests sharing the one
connection cannot interleave inside one.
"""

from __future__ import annotations

import json
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from licensing_service.domain import cache_tiers
from licensing_service.domain.breaker import BreakerState, CircuitBreaker
from licensing_service.domain.cache_tiers import CacheTier
from licensing_service.domain.credentials import hash_fingerprint, normalize_email, tokens_match
from licensing_service.domain.rate_limit import FailureLimiter
from licensing_service.domain.sessions import (
    SESSION_TTL,
    Conflict,
    HeartbeatOutcome,
    SessionRecord,
    SessionStatus,
    plan_heartbeat,
    plan_start,
    plan_takeover,
)
from licensing_service.domain.subscription import (
    Standing,
    SubscriptionStatus,
    standing,
)
from licensing_service.service.audit import AuditBuffer
from licensing_service.service.customer_view import CustomerView
from licensing_service.service.emails import EmailType, compose
from licensing_service.service.errors import (
    ConstraintViolation,
    InvalidCredentials,
    NoValidSubscription,
    RateLimited,
    SessionConflict,
    SessionEnded,
    SessionExpired,
    SessionIdTaken,
    SessionKicked,
    SessionNotFound,
    SubscriptionInactive,
    Unavailable,
)
from licensing_service.service.guard import Guarded, StoreGuard
from licensing_service.service.ports import AuditEntry, CustomerRecord, Store, UnitOfWork
from licensing_service.service.shared_failures import SharedFailures

# The license_changes feed keeps a day of changes, pruned by the audit flusher
# at most every ten minutes of the service's clock (adapters/license_feed.py:
# a process whose cursor falls behind that forgets every license it holds).
LICENSE_CHANGES_RETENTION = timedelta(days=1)
LICENSE_CHANGES_PRUNE_EVERY = timedelta(minutes=10)
# Compared against when the email is unknown, so both failure paths do the
# same constant-time work.
_ABSENT_TOKEN = "POSPAL-0000-0000-0000-0000"  # noqa: S105 - a decoy, never a valid token


@dataclass(frozen=True, slots=True)
class Call:
    request_id: str
    client_address: str | None
    now: datetime


@dataclass(frozen=True, slots=True)
class Validated:
    customer: CustomerRecord  # as it was before this validation
    standing: Standing
    tier: CacheTier
    machine_changed: bool | None
    fingerprint_processed: bool
    degraded: bool


@dataclass(frozen=True, slots=True)
class SessionGranted:
    customer: CustomerRecord
    session_id: str
    device_info: dict[str, Any]
    takeover: bool
    kicked: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Limits:
    per_ip: FailureLimiter
    per_email: FailureLimiter
    # None: each process counts alone (one service process, or tests of the rule).
    shared: SharedFailures | None = None

    def failed(self, email: str, address: str, now: datetime) -> None:
        self.per_email.record_failure(email, now)
        self.per_ip.record_failure(address, now)
        if self.shared is not None:
            self.shared.note("email", email, now)
            self.shared.note("ip", address, now)


class LicensingService:
    def __init__(
        self,
        store: Store,
        breaker: CircuitBreaker,
        limits: Limits,
        audit: AuditBuffer,
        view: CustomerView,
    ) -> None:
        self.store = store
        self.breaker = breaker
        self.guard = StoreGuard(store, breaker)
        self.limits = limits
        self.audit_buffer = audit
        # The store's too: it serves fresh rows and stamps from it; here, its
        # last-known-good records (degraded answers).
        self.view = view
        self._changes_pruned_at: datetime | None = None

    # ------------------------------------------------------------ validation

    def validate(
        self,
        call: Call,
        email: str,
        token: str,
        fingerprint: str | None,
        skip_machine_update: bool,
    ) -> Validated:
        email = normalize_email(email)
        self._check_limits(call, email)
        processed = fingerprint is not None and not skip_machine_update
        try:
            # Autocommit: a (usually cached) read and a deferred stamp; a device
            # change gets its own transaction so the switch, its audit and its
            # email land together or not at all.
            with self._tx(call.now, atomic=False) as uow:
                customer = self._authenticate(uow, call, email, token, "validation")
                good = self._require_active(customer, call, "validation")
                new_hash = _changed_device(customer, fingerprint) if processed else None
                if new_hash is None:
                    uow.licenses.record_validation(customer.id, call.now)
            machine_changed = False if new_hash is None else self._switch(call, customer, new_hash)
        except Unavailable:
            return self._validate_degraded(call, email, token)
        tier = cache_tiers.tier_for(
            active=True, last_validation=customer.last_validation, now=call.now
        )
        self._audit(call, "validation", "success", customer.id)
        return Validated(customer, good, tier, machine_changed, processed, False)

    def _switch(self, call: Call, customer: CustomerRecord, new_hash: str) -> bool | None:
        """Store a new device's fingerprint hash, with the validation's stamp; a
        change from a known device is audited and emailed in the same
        transaction. None on first activation. Never inside another unit: one
        connection serves every request, so a nested scope would commit or roll
        back its caller's."""
        stored = customer.machine_fingerprint
        with self._tx(call.now) as uow:
            uow.licenses.set_fingerprint(customer.id, new_hash)
            if stored is not None:
                self._machine_switch(uow, call, customer, "validation from a new device")
            uow.licenses.record_validation(customer.id, call.now)
        return None if stored is None else True

    def _validate_degraded(self, call: Call, email: str, token: str) -> Validated:
        """Answer from the last-known-good record while the database is out."""
        known = self.view.last_known_good(email)
        if known is None:
            raise self.guard.unavailable(call.now)
        if not tokens_match(token, known.unlock_token):
            self._credential_failure(call, email, known.id, "validation")
        good = standing(known.subscription_status, known.current_period_end, call.now)
        self._audit(call, "validation", "degraded" if good.is_active else "inactive", known.id)
        if not good.is_active:
            raise SubscriptionInactive("Subscription is not active", known, call.now)
        return Validated(known, good, cache_tiers.MINIMAL, False, False, True)

    def instant(
        self, call: Call, email: str, stripe_session_id: str, fingerprint: str
    ) -> Validated:
        """First validation right after checkout: the Stripe session id is the credential."""
        email = normalize_email(email)
        self._check_limits(call, email)
        with self._tx(call.now, atomic=False) as uow:
            customer = uow.licenses.by_email(email)
            expected = customer.stripe_session_id if customer is not None else None
            presented_ok = tokens_match(stripe_session_id, expected or _ABSENT_TOKEN)
            if customer is None or expected is None or not presented_ok:
                self._credential_failure(
                    call, email, customer.id if customer else None, "instant_validation"
                )
            assert customer is not None
            good = standing(customer.subscription_status, customer.current_period_end, call.now)
            if not good.is_active:
                self._audit(call, "instant_validation", "inactive", customer.id)
                raise NoValidSubscription("No valid subscription found for this payment session")
            new_hash = _changed_device(customer, fingerprint)
            if new_hash is None:
                uow.licenses.record_validation(customer.id, call.now)
        changed = False if new_hash is None else self._switch(call, customer, new_hash)
        self._audit(call, "instant_validation", "success", customer.id)
        self.view.confirm(customer)
        return Validated(customer, good, cache_tiers.INSTANT, changed, True, False)

    # -------------------------------------------------------------- sessions

    def start_session(
        self,
        call: Call,
        email: str,
        token: str,
        session_id: str,
        fingerprint: str,
        device_info: dict[str, Any],
        *,
        takeover: bool = False,
    ) -> SessionGranted:
        email = normalize_email(email)
        self._check_limits(call, email)
        action = "session_takeover" if takeover else "session_start"
        try:
            with self._tx(call.now) as uow:
                customer = self._authenticate(uow, call, email, token, action)
                self._require_active(customer, call, action)
                granted = self._start_in(
                    uow, call, customer, session_id, fingerprint, device_info, action
                )
        except ConstraintViolation as exc:
            # Only reachable if another process won a race the IMMEDIATE
            # transaction should already have serialised; say so, never 500.
            raise SessionIdTaken("Session could not be started; retry") from exc
        return granted

    def _start_in(
        self,
        uow: UnitOfWork,
        call: Call,
        customer: CustomerRecord,
        session_id: str,
        fingerprint: str,
        device_info: dict[str, Any],
        action: str,
    ) -> SessionGranted:
        now = call.now
        takeover = action == "session_takeover"
        existing = uow.sessions.get(session_id)
        if existing is not None and existing.customer_id != customer.id:
            raise SessionIdTaken("This session id belongs to another license")
        open_sessions = uow.sessions.open_for(customer.id)
        kicked: tuple[str, ...] = ()
        if takeover:
            kicked = plan_takeover(open_sessions, session_id)
            uow.sessions.set_status(kicked, SessionStatus.KICKED, now)
            self._machine_switch(uow, call, customer, "takeover", device_info.get("hostname"))
        else:
            decision = plan_start(open_sessions, session_id, now)
            if isinstance(decision, Conflict):
                raise _conflict(decision.holder)
            uow.sessions.set_status(decision.expire, SessionStatus.EXPIRED, now)
        record = SessionRecord(
            session_id, customer.id, SessionStatus.ACTIVE, now, json.dumps(device_info)
        )
        uow.sessions.start(record, hash_fingerprint(fingerprint), call.client_address, now)
        details = {"session_id": session_id, "kicked": list(kicked)} if takeover else None
        uow.audit.record([audit_entry(call, action, "success", customer.id, details)])
        return SessionGranted(customer, session_id, device_info, takeover, kicked)

    def heartbeat(
        self, call: Call, session_id: str, email: str | None = None, token: str | None = None
    ) -> SessionRecord:
        outcome, record = self._heartbeat_tx(call, session_id, email, token)
        self._audit(
            call, "session_heartbeat", outcome.value, record.customer_id if record else None
        )
        if outcome is HeartbeatOutcome.ALIVE and record is not None:
            return replace(record, last_heartbeat=call.now)
        raise _heartbeat_error(outcome)

    def _heartbeat_tx(
        self, call: Call, session_id: str, email: str | None, token: str | None
    ) -> tuple[HeartbeatOutcome, SessionRecord | None]:
        with self._tx(call.now) as uow:
            owner = self._optional_owner(uow, call, email, token, "session_heartbeat")
            record = uow.sessions.get(session_id)
            if record is not None and owner is not None and record.customer_id != owner.id:
                record = None  # another license's session: do not reveal it exists
            outcome = plan_heartbeat(record, call.now)
            if record is None or outcome is not HeartbeatOutcome.ALIVE:
                if outcome is HeartbeatOutcome.EXPIRED and record is not None:
                    uow.sessions.set_status([session_id], SessionStatus.EXPIRED, call.now)
                return outcome, record
            customer = owner or uow.licenses.by_id(record.customer_id)
            assert customer is not None
            self._require_active(customer, call, "session_heartbeat")
            uow.sessions.touch(session_id, call.now)
            return outcome, record

    def end_session(
        self, call: Call, session_id: str, email: str | None = None, token: str | None = None
    ) -> SessionRecord:
        with self._tx(call.now) as uow:
            owner = self._optional_owner(uow, call, email, token, "session_end")
            record = uow.sessions.get(session_id)
            if record is None or (owner is not None and record.customer_id != owner.id):
                raise SessionNotFound("Session not found")
            if record.status == SessionStatus.KICKED:
                self._audit(call, "session_end", "kicked", record.customer_id)
                raise SessionKicked("Session was taken over by another device")
            outcome = "success" if record.status == SessionStatus.ACTIVE else "already_closed"
            if record.status == SessionStatus.ACTIVE:
                uow.sessions.set_status([session_id], SessionStatus.ENDED, call.now)
            uow.audit.record([audit_entry(call, "session_end", outcome, record.customer_id)])
        return replace(record, status=SessionStatus.ENDED)

    def authenticate(self, call: Call, email: str, token: str, action: str) -> CustomerRecord:
        """Credentials only (rate-limited and audited like a validation)."""
        email = normalize_email(email)
        self._check_limits(call, email)
        with self._tx(call.now, atomic=False) as uow:
            return self._authenticate(uow, call, email, token, action)

    # --------------------------------------------------------- state changes

    def set_subscription_status(
        self, call: Call, customer_id: int, status: str, reason: str
    ) -> CustomerRecord:
        """Commit a status change and, in the same step, the last-known-good
        record the breaker answers from, so no degraded answer can contradict it."""
        target = SubscriptionStatus(status)  # ValueError for a status the schema refuses
        with self._tx(call.now) as uow:
            if uow.licenses.by_id(customer_id) is None:
                raise LookupError(f"no customer {customer_id}")
            uow.licenses.set_status(customer_id, target.value, call.now)
            customer_before = uow.licenses.by_id(customer_id)
            assert customer_before is not None
            uow.billing.note_license_change(customer_before.email, call.now)
            details = {"reason": reason}
            uow.audit.record(
                [audit_entry(call, "status_change", target.value, customer_id, details)]
            )
            customer = uow.licenses.by_id(customer_id)
        assert customer is not None
        self.view.confirm(customer)
        return customer

    # ---------------------------------------------------------------- upkeep

    def flush_audit(self, now: datetime, limit: int | None = None) -> int:
        """Group-commit buffered audit entries and deferred validation stamps,
        at most ``limit`` of each. Returns the rows written (entries + stamps);
        on any failure the entries are kept for the next attempt."""
        entries = self.audit_buffer.take(limit)
        if not entries and not self.view.pending_stamps():
            return 0
        try:
            with self._tx(now) as uow:
                if entries:
                    uow.audit.record(entries)
                stamps = uow.licenses.flush_validations(limit)
        except Unavailable:
            self.audit_buffer.put_back(entries)
            return 0
        except BaseException:
            self.audit_buffer.put_back(entries)
            raise
        return len(entries) + stamps

    def share_failures(self, now: datetime) -> int:
        """Write this replica's failed attempts and count the other replicas'
        (``Limits.shared``); returns how many were learnt. Kept for the next
        call when the database refuses."""
        shared = self.limits.shared
        # Not while the breaker is open or half-open: a background job must not
        # spend the half-open trial that a request's answer depends on.
        if shared is None or self.breaker.state is not BreakerState.CLOSED:
            return 0
        mine = shared.take()
        limiters = {"email": self.limits.per_email, "ip": self.limits.per_ip}
        try:
            with self._tx(now, atomic=bool(mine)) as uow:
                return shared.exchange(uow, mine, limiters, now)
        except Unavailable:
            shared.put_back(mine)
            return 0
        except BaseException:
            shared.put_back(mine)
            raise

    def prune_license_changes(self, now: datetime) -> int:
        """Delete the license_changes feed's notes older than its retention, at
        most every LICENSE_CHANGES_PRUNE_EVERY; returns how many went. Tried
        again at the next call when the database refuses."""
        last = self._changes_pruned_at
        if last is not None and now - last < LICENSE_CHANGES_PRUNE_EVERY:
            return 0
        # As share_failures: never the half-open trial a request depends on.
        if self.breaker.state is not BreakerState.CLOSED:
            return 0
        try:
            with self._tx(now) as uow:
                pruned = uow.billing.prune_license_changes(now - LICENSE_CHANGES_RETENTION)
        except Unavailable:
            return 0
        self._changes_pruned_at = now
        return pruned

    def has_backlog(self) -> bool:
        return bool(len(self.audit_buffer) or self.view.pending_stamps())

    def alive_sessions(self, now: datetime) -> int:
        with self._tx(now, atomic=False) as uow:
            return uow.sessions.count_alive(now - SESSION_TTL)

    # --------------------------------------------------------------- helpers

    def _tx(self, now: datetime, *, atomic: bool = True) -> Guarded:
        """A transaction (or autocommit scope) through the circuit breaker."""
        return Guarded(self.guard, now, atomic)

    def transaction(self, now: datetime) -> AbstractContextManager[UnitOfWork]:
        """A write transaction through the circuit breaker, for other use cases."""
        return Guarded(self.guard, now, True)

    def _check_limits(self, call: Call, email: str) -> None:
        waits = [
            self.limits.per_email.retry_after(email, call.now),
            self.limits.per_ip.retry_after(call.client_address or "-", call.now),
        ]
        blocked = [w for w in waits if w is not None]
        if blocked:
            self._audit(call, "credential_check", "rate_limited", None)
            raise RateLimited("Too many failed attempts; try again later", retry_after=max(blocked))

    def _authenticate(
        self, uow: UnitOfWork, call: Call, email: str, token: str, action: str
    ) -> CustomerRecord:
        customer = uow.licenses.by_email(email)
        stored = customer.unlock_token if customer is not None else _ABSENT_TOKEN
        if not tokens_match(token, stored) or customer is None:
            self._credential_failure(call, email, customer.id if customer else None, action)
        assert customer is not None
        self.view.confirm(customer)  # the freshest truth we have, for degraded answers
        return customer

    def _optional_owner(
        self, uow: UnitOfWork, call: Call, email: str | None, token: str | None, action: str
    ) -> CustomerRecord | None:
        if email is None or token is None:
            return None
        email = normalize_email(email)
        self._check_limits(call, email)
        return self._authenticate(uow, call, email, token, action)

    def _credential_failure(
        self, call: Call, email: str, customer_id: int | None, action: str
    ) -> None:
        self.limits.failed(email, call.client_address or "-", call.now)
        self._audit(call, action, "invalid_credentials", customer_id)
        raise InvalidCredentials("Invalid email or unlock token")

    def _require_active(self, customer: CustomerRecord, call: Call, action: str) -> Standing:
        good = standing(customer.subscription_status, customer.current_period_end, call.now)
        if not good.is_active:
            self._audit(call, action, "inactive", customer.id)
            raise SubscriptionInactive("Subscription is not active", customer, call.now)
        return good

    def _machine_switch(
        self,
        uow: UnitOfWork,
        call: Call,
        customer: CustomerRecord,
        reason: str,
        device: str | None = None,
    ) -> None:
        uow.audit.record([audit_entry(call, "machine_switch", reason, customer.id)])
        uow.outbox.enqueue(
            compose(
                EmailType.MACHINE_SWITCH,
                customer.email,
                customer.id,
                name=display_name(customer.name, customer.email),
                device=device or "another device",
                reason=reason,
                at=call.now.isoformat(),
            ),
            call.now,
        )

    def _audit(self, call: Call, action: str, outcome: str, customer_id: int | None) -> None:
        self.audit_buffer.add(audit_entry(call, action, outcome, customer_id))


def _changed_device(customer: CustomerRecord, fingerprint: str | None) -> str | None:
    """The new fingerprint's hash, or None when the stored one matches."""
    if fingerprint is None:
        return None
    new_hash = hash_fingerprint(fingerprint)
    return None if new_hash == customer.machine_fingerprint else new_hash


def audit_entry(
    call: Call,
    action: str,
    outcome: str,
    customer_id: int | None,
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    return AuditEntry(
        action, outcome, customer_id, call.request_id, call.client_address, call.now, details
    )


def _conflict(holder: SessionRecord) -> SessionConflict:
    device = json.loads(holder.device_info) if holder.device_info else None
    return SessionConflict(holder.last_heartbeat, device)


def _heartbeat_error(outcome: HeartbeatOutcome) -> Exception:
    match outcome:
        case HeartbeatOutcome.NOT_FOUND:
            return SessionNotFound("Session not found")
        case HeartbeatOutcome.KICKED:
            return SessionKicked("Session was taken over by another device")
        case HeartbeatOutcome.ENDED:
            return SessionEnded("Session has ended; start a new one")
        case _:
            return SessionExpired("Session expired; start a new one")


def display_name(name: str | None, email: str) -> str:
    return name or email.split("@", 1)[0]
