"""Stripe webhooks: verified, applied exactly once, whatever the delivery order.

One ``BEGIN IMMEDIATE`` transaction per batch of deliveries
(:mod:`licensing_service.service.webhook_batch`), one savepoint per event
inside it, holding the event's claim (inserted first, so the UNIQUE
constraint decides who processes it), the merged billing state, the license
change, its audit and its emails. So:

* a crash rolls the whole batch back, unanswered; a handler error rolls back
  that event's savepoint alone; the event is then recorded as failed and
  answered 5xx, and Stripe's retry processes it;
* every answer waits for its batch's COMMIT, so a 2xx means durable;
* a duplicate within one batch sees the first copy's claim completed;
* concurrent duplicates serialise on the write lock (across worker
  processes too); the later ones find the claim completed and answer 200
  ``{"idempotent": true}`` with no effects;
* the final license state is a merge of versioned facts
  (:mod:`licensing_service.domain.billing`), the same in any order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson

from licensing_service.contract import stripe as contract
from licensing_service.domain.billing import BillingState, merge
from licensing_service.domain.credentials import new_unlock_token, normalize_email
from licensing_service.domain.stripe_events import (
    EmailCause,
    EmailKind,
    EventHeader,
    PayloadInvalid,
    StripeChange,
    read_change,
    read_header,
)
from licensing_service.domain.webhook_claims import DEFAULT_LEASE, Claim, decide_claim
from licensing_service.service.emails import EmailType, compose
from licensing_service.service.errors import (
    LicensingError,
    StorageUnavailable,
    Unavailable,
    WebhookHandlerFailed,
    WebhookInProgress,
    WebhookNotConfigured,
    WebhookPayloadInvalid,
    WebhookSignatureInvalid,
)
from licensing_service.service.faults import InjectedFailure
from licensing_service.service.licensing import (
    Call,
    LicensingService,
    audit_entry,
    display_name,
)
from licensing_service.service.ports import AuditEntry, CustomerRecord, NewCustomer, UnitOfWork

log = logging.getLogger(__name__)

_EMAIL_TYPES = {
    EmailKind.WELCOME: EmailType.WELCOME,
    EmailKind.SUSPENSION: EmailType.SUSPENSION,
    EmailKind.REACTIVATION: EmailType.REACTIVATION,
}


@dataclass(frozen=True, slots=True)
class WebhookResult:
    event_id: str
    event_type: str
    # applied | stale | recorded | ignored | unhandled | duplicate
    outcome: str
    customer_id: int | None = None


@dataclass(frozen=True, slots=True)
class _Committed:
    """An event's outcome inside the batch, answered once the batch commits."""

    result: WebhookResult
    customer: CustomerRecord | None


@dataclass(frozen=True, slots=True)
class _Applied:
    outcome: str
    customer: CustomerRecord | None


class WebhookService:
    def __init__(
        self,
        licensing: LicensingService,
        secrets: Sequence[str],
        *,
        tolerance_seconds: int = contract.TOLERANCE_SECONDS,
        lease: timedelta = DEFAULT_LEASE,
        fail_hook: Callable[[str], None] | None = None,
    ) -> None:
        self.licensing = licensing
        self.secrets = tuple(s for s in secrets if s)
        self.tolerance = tolerance_seconds
        self.lease = lease
        # Harness mode only (Faults.check_webhook): may raise InjectedFailure.
        self.fail_hook = fail_hook

    def receive(self, call: Call, body: bytes, signature: str | None) -> WebhookResult:
        """One delivery in a transaction of its own (the batcher's batch of one)."""
        header = self.verified_header(call, body, signature)
        (outcome,) = self.receive_batch([(call, header)])
        if isinstance(outcome, LicensingError):
            raise outcome
        return outcome

    def receive_batch(
        self, deliveries: Sequence[tuple[Call, EventHeader]]
    ) -> list[WebhookResult | LicensingError]:
        """Verified deliveries in one transaction, each in a savepoint of its
        own: an event that fails is undone alone (and recorded as failed, so
        Stripe's retry processes it) while the others commit. The outcomes are
        returned only after the COMMIT; if the transaction cannot begin or
        commit, every delivery gets the same ``Unavailable`` (retryable 503)."""
        results: list[_Committed | LicensingError] = []
        try:
            with self.licensing.transaction(deliveries[-1][0].now) as uow:
                if len(deliveries) > 1:
                    headers = [header for _, header in deliveries]
                    uow.billing.lock_batch([h.id for h in headers], _customers_of(headers))
                for call, header in deliveries:
                    results.append(self._one(uow, call, header))
        except LicensingError as exc:  # the database is unavailable: nothing committed
            return [exc] * len(deliveries)
        for result in results:
            if isinstance(result, _Committed) and result.customer is not None:
                # Degraded answers follow the committed state at once (no grace).
                self.licensing.view.confirm(result.customer)
        return [r.result if isinstance(r, _Committed) else r for r in results]

    def _one(self, uow: UnitOfWork, call: Call, header: EventHeader) -> _Committed | LicensingError:
        try:
            with uow.savepoint():
                claim = self._claim(uow, header, call.now)
                if claim is Claim.DUPLICATE:
                    return _Committed(WebhookResult(header.id, header.type, "duplicate"), None)
                applied = self._apply(uow, call, header)
                # After the effects, so an injected failure proves they roll back.
                if self.fail_hook is not None:
                    self.fail_hook(header.id)
                customer_id = applied.customer.id if applied.customer else None
                uow.billing.finish_event(header.id, applied.outcome, customer_id, call.now)
        except WebhookInProgress as exc:
            return exc
        except (StorageUnavailable, Unavailable):
            raise  # the database itself failed: the whole batch is refused
        except PayloadInvalid as exc:
            self._record_failure(uow, header, f"invalid payload: {exc}", call.now)
            return WebhookPayloadInvalid(exc.field, exc.message)
        except Exception as exc:
            # Never the message: it may quote the payload.
            self._record_failure(uow, header, f"handler failed: {type(exc).__name__}", call.now)
            level = logging.INFO if isinstance(exc, InjectedFailure) else logging.ERROR
            log.log(level, "webhook %s (%s) failed: %s", header.id, header.type, type(exc).__name__)
            failed = WebhookHandlerFailed("Webhook handler failed; Stripe will retry")
            failed.__cause__ = exc
            return failed
        result = WebhookResult(header.id, header.type, applied.outcome, customer_id)
        return _Committed(result, applied.customer)

    # --------------------------------------------------------------- steps

    def verified_header(self, call: Call, body: bytes, signature: str | None) -> EventHeader:
        """The event's header, once its signature and shape are checked (no database)."""
        if not self.secrets:
            raise WebhookNotConfigured("STRIPE_WEBHOOK_SECRET is not configured")
        now = int(call.now.timestamp())
        try:
            contract.verify_signature(body, signature, self.secrets, now, self.tolerance)
        except contract.SignatureError as exc:
            raise WebhookSignatureInvalid(f"Stripe signature refused: {exc}") from None
        try:
            event = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise WebhookPayloadInvalid("body", "not valid JSON") from None
        try:
            return read_header(event)
        except PayloadInvalid as exc:
            raise WebhookPayloadInvalid(exc.field, exc.message) from None

    def _claim(self, uow: UnitOfWork, header: EventHeader, now: datetime) -> Claim:
        billing = uow.billing
        row = billing.webhook_event(header.id)
        claim = decide_claim(
            row.status if row else None,
            row.lease_until if row else None,
            row.received_at if row else None,
            now,
            self.lease,
        )
        if claim is Claim.IN_FLIGHT:
            raise WebhookInProgress(
                "Another worker is processing this event; retry later",
                retry_after=int(self.lease.total_seconds()),
            )
        if claim is not Claim.DUPLICATE:
            created = datetime.fromtimestamp(header.created, UTC)
            billing.claim_event(
                header.id, header.type, created, now, now + self.lease, retry=claim is not Claim.NEW
            )
        return claim

    def _apply(self, uow: UnitOfWork, call: Call, header: EventHeader) -> _Applied:
        if header.type not in contract.HANDLED_EVENTS:
            return _Applied("unhandled", None)
        change = read_change(header)
        if change is None:
            return _Applied("ignored", None)
        billing = uow.billing
        merged = merge(billing.billing_state(change.stripe_customer_id), change.fact)
        state = merged.state
        billing.save_billing_state(change.stripe_customer_id, state, call.now)
        customer = self._license(uow, call, change, state)
        if customer is not None and state.status is not None:
            before = customer.subscription_status
            billing.apply_billing(customer.id, state, call.now)
            if before != state.status.value:
                uow.audit.record([self._status_audit(call, customer.id, state, header)])
                billing.note_license_change(customer.email, call.now)
            customer = uow.licenses.by_id(customer.id)
        if change.refund is not None:
            billing.record_refund(customer.id if customer else None, change.refund, call.now)
        for cause in change.emails:
            self._queue_email(uow, call, cause, change, customer)
        if change.fact.status is None:
            outcome = "recorded"
        else:
            outcome = "stale" if merged.stale else "applied"
        return _Applied(outcome, customer)

    def _license(
        self, uow: UnitOfWork, call: Call, change: StripeChange, state: BillingState
    ) -> CustomerRecord | None:
        """The license this event concerns, linked to its Stripe customer; a
        completed checkout creates it (or re-links an existing one by email)."""
        billing = uow.billing
        customer = billing.license_for(change.stripe_customer_id, change.email)
        if change.checkout_session_id is not None:
            assert change.email is not None
            customer = customer or uow.licenses.by_email(normalize_email(change.email))
            if customer is None:
                customer_id = uow.licenses.insert(
                    NewCustomer(
                        email=normalize_email(change.email),
                        name=change.name,
                        unlock_token=new_unlock_token(),
                        subscription_status=(state.status or "active"),
                        stripe_customer_id=change.stripe_customer_id,
                        stripe_session_id=change.checkout_session_id,
                        subscription_id=state.subscription_id,
                    ),
                    call.now,
                )
                uow.audit.record([audit_entry(call, "license_created", "checkout", customer_id)])
                return uow.licenses.by_id(customer_id)
            billing.link(
                customer.id,
                change.stripe_customer_id,
                call.now,
                checkout_session_id=change.checkout_session_id,
                name=change.name,
            )
        elif customer is not None and billing.stripe_customer_id(customer.id) is None:
            billing.link(customer.id, change.stripe_customer_id, call.now)
        return customer

    def _queue_email(
        self,
        uow: UnitOfWork,
        call: Call,
        cause: EmailCause,
        change: StripeChange,
        customer: CustomerRecord | None,
    ) -> None:
        recipient = customer.email if customer is not None else change.email
        if recipient is None:
            log.warning("no address for the %s email of event %s", cause.kind, change.header.id)
            return
        name = display_name(customer.name if customer else change.name, recipient)
        params: dict[str, str] = {"name": name}
        if cause.kind is EmailKind.WELCOME and customer is not None:
            params["unlock_token"] = customer.unlock_token
        email = compose(
            _EMAIL_TYPES[cause.kind],
            recipient,
            customer.id if customer else None,
            cause.dedupe_key,
            **params,
        )
        uow.outbox.enqueue(email, call.now)

    @staticmethod
    def _record_failure(uow: UnitOfWork, header: EventHeader, error: str, now: datetime) -> None:
        """In the batch's transaction, after the event's savepoint rolled back."""
        try:
            with uow.savepoint():
                uow.billing.fail_event(header.id, header.type, error, now)
        except (StorageUnavailable, Unavailable):
            raise
        except Exception as exc:  # the answer is 5xx either way; Stripe retries
            log.warning("could not record failure of %s: %s", header.id, type(exc).__name__)

    @staticmethod
    def _status_audit(
        call: Call, customer_id: int, state: BillingState, header: EventHeader
    ) -> AuditEntry:
        details = {"reason": header.type, "event": header.id}
        assert state.status is not None
        return audit_entry(call, "status_change", state.status.value, customer_id, details)


def _customers_of(headers: Sequence[EventHeader]) -> list[str]:
    """The Stripe customers whose billing state a batch will lock; an event
    whose payload names none (or is malformed: its handler records why) adds
    none."""
    found = []
    for header in headers:
        if header.type not in contract.HANDLED_EVENTS:
            continue
        try:
            change = read_change(header)
        except PayloadInvalid:
            continue
        if change is not None:
            found.append(change.stripe_customer_id)
    return found
