"""The service wired to the in-memory store and a hand-moved clock: unit
tests of the use cases, with no server and no SQLite."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from licensing_service.adapters.clock import ManualClock
from licensing_service.adapters.memory import MemoryStore
from licensing_service.domain.breaker import CircuitBreaker
from licensing_service.domain.rate_limit import FailureLimiter
from licensing_service.service.audit import AuditBuffer
from licensing_service.service.customer_view import CustomerView
from licensing_service.service.licensing import Call, LicensingService, Limits
from licensing_service.service.ports import CustomerRecord, NewCustomer
from licensing_service.service.webhooks import WebhookService

T0 = datetime(2026, 1, 1, tzinfo=UTC)
WEBHOOK_SECRET = "whsec_unit"
BREAKER_THRESHOLD = 5
RATE_LIMIT = 5

_requests = itertools.count(1)


@dataclass
class Rig:
    clock: ManualClock
    store: MemoryStore
    service: LicensingService
    webhooks: WebhookService

    def call(self, client: str = "10.0.0.1") -> Call:
        return Call(f"req_{next(_requests)}", client, self.clock.now())

    def add(
        self,
        email: str = "till@x.test",
        unlock: str = "POSPAL-AAAA-BBBB-CCCC-DDDD",
        status: str = "active",
        **extra: object,
    ) -> CustomerRecord:
        with self.store.transaction() as uow:
            cid = uow.licenses.insert(
                NewCustomer(email, "Till", unlock, status, **extra),  # type: ignore[arg-type]
                self.clock.now(),
            )
            found = uow.licenses.by_id(cid)
        assert found is not None
        return found

    def audit_outcomes(self, action: str) -> list[str]:
        """What the buffer and the audit table hold for ``action``, oldest first."""
        self.service.flush_audit(self.clock.now())
        return [e.outcome for e in self.store.tables.audit if e.action == action]

    def emails(self) -> list[str]:
        return [row.email.email_type for row in self.store.tables.emails.values()]


def rig(start: datetime = T0) -> Rig:
    clock = ManualClock(start)
    view = CustomerView()
    store = MemoryStore(view=view)
    window = timedelta(minutes=15)
    service = LicensingService(
        store,
        CircuitBreaker(BREAKER_THRESHOLD, timedelta(seconds=30)),
        Limits(
            per_ip=FailureLimiter(RATE_LIMIT * 4, window),
            per_email=FailureLimiter(RATE_LIMIT, window),
        ),
        AuditBuffer(),
        view,
    )
    webhooks = WebhookService(service, [WEBHOOK_SECRET])
    return Rig(clock, store, service, webhooks)
