"""Last-known-good license records, answered from while the breaker is open."""

from __future__ import annotations

from dataclasses import dataclass, field

from licensing_service.service.ports import CustomerRecord


@dataclass(slots=True)
class Snapshot:
    """Per-process, bounded (oldest entry evicted first)."""

    max_entries: int = 200_000
    _by_email: dict[str, CustomerRecord] = field(default_factory=dict)

    def get(self, email: str) -> CustomerRecord | None:
        return self._by_email.get(email)

    def put(self, customer: CustomerRecord) -> None:
        entries = self._by_email
        entries.pop(customer.email, None)
        entries[customer.email] = customer
        if len(entries) > self.max_entries:
            del entries[next(iter(entries))]

    def discard(self, emails: list[str] | None) -> None:
        """Another process changed these licenses (None: any license may have
        changed): no answer from stale entries."""
        if emails is None:
            self._by_email.clear()
            return
        for email in emails:
            self._by_email.pop(email, None)

    def __len__(self) -> int:
        return len(self._by_email)
