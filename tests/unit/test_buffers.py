from datetime import UTC, datetime

from licensing_service.service.audit import AuditBuffer
from licensing_service.service.ports import AuditEntry

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def entry(n: int) -> AuditEntry:
    return AuditEntry("validation", "success", n, f"req_{n}", None, T0)


def test_audit_buffer_takes_in_chunks_oldest_first_and_puts_back_in_front() -> None:
    buffer = AuditBuffer()
    for n in range(5):
        buffer.add(entry(n))
    first = buffer.take(2)
    assert [e.customer_id for e in first] == [0, 1]
    buffer.put_back(first)
    assert [e.customer_id for e in buffer.take()] == [0, 1, 2, 3, 4]


def test_audit_buffer_is_bounded_and_counts_drops() -> None:
    buffer = AuditBuffer(max_pending=3)
    for n in range(5):
        buffer.add(entry(n))
    assert len(buffer) == 3 and buffer.dropped == 2
    assert [e.customer_id for e in buffer.take()] == [2, 3, 4]
