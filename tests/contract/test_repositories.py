"""The storage ports' contract, run against the SQLite adapter (a real temp
file), the PostgreSQL adapter (a real server, tests/pg.py) and the in-memory
fake alike: what the service relies on, including the rollbacks and the
constraints, must hold for all three."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from licensing_service.adapters.memory import MemoryStore, MemoryTables, NestedUnit
from licensing_service.adapters.sqlite_migrations import migrate
from licensing_service.adapters.sqlite_store import SqliteStore
from licensing_service.contract.faults import DbFault
from licensing_service.domain.billing import BillingState, Version
from licensing_service.domain.sessions import SessionRecord
from licensing_service.domain.stripe_events import Refund
from licensing_service.domain.subscription import SubscriptionStatus
from licensing_service.service.customer_view import CustomerView
from licensing_service.service.errors import ConstraintViolation, StorageUnavailable
from licensing_service.service.ports import (
    AuditEntry,
    NewCustomer,
    NewEmail,
    Store,
    UnitOfWork,
)

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
LEASE = timedelta(minutes=2)


@dataclass
class Backend:
    store: Store
    view: CustomerView  # the one ``store`` keeps coherent
    # A second store on the same database (another worker process), on the view given.
    other: Callable[[CustomerView], Store]
    audit_actions: Callable[[], list[str]]
    fail: Callable[[], None]


def _sqlite(tmp_path: Path) -> Backend:
    path = tmp_path / "contract.db"
    view = CustomerView()
    store = SqliteStore(path, background_checkpoints=False, view=view)
    migrate(store.connection(), T0)

    def actions() -> list[str]:
        rows = store.connection().execute("SELECT action FROM audit_log ORDER BY id").fetchall()
        return [r[0] for r in rows]

    def fail() -> None:
        store.faults.set(DbFault(errors=True))

    def other(view: CustomerView) -> Store:
        # Re-reads data_version at every scope: the test does not wait out the 1 ms.
        return SqliteStore(path, background_checkpoints=False, view=view, revalidate_seconds=0)

    return Backend(store, view, other, actions, fail)


def _postgres(tmp_path: Path, url: str) -> Backend:
    del tmp_path
    from licensing_service.adapters.pg_store import PgStore, pool

    view = CustomerView()
    store = PgStore(pool(url), view=view)

    def actions() -> list[str]:
        with store.pool.connection() as conn:
            rows = conn.execute(b"SELECT action FROM audit_log ORDER BY id").fetchall()
        return [str(r[0]) for r in rows]

    def fail() -> None:
        store.faults.set(DbFault(errors=True))

    def other(view: CustomerView) -> Store:
        # Reads the change feed at every scope: the test does not wait out the bound.
        return PgStore(pool(url, max_size=1), view=view, revalidate_seconds=0)

    return Backend(store, view, other, actions, fail)


def _memory(tmp_path: Path) -> Backend:
    del tmp_path
    tables = MemoryTables()
    view = CustomerView()
    store = MemoryStore(tables, view=view)

    def fail() -> None:
        store.faults.set(DbFault(errors=True))

    def other(view: CustomerView) -> Store:
        return MemoryStore(tables, view=view)

    return Backend(store, view, other, lambda: [a.action for a in tables.audit], fail)


@pytest.fixture(params=["sqlite", "postgres", "memory"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    made: Backend
    if request.param == "postgres":
        made = _postgres(tmp_path, request.getfixturevalue("pg_url"))
    else:
        made = (_sqlite if request.param == "sqlite" else _memory)(tmp_path)
    yield made
    made.store.close()


def customer(email: str = "a@x.test", unlock: str = "POSPAL-AAAA", **extra: object) -> NewCustomer:
    return NewCustomer(email, "Ann", unlock, "active", **extra)  # type: ignore[arg-type]


def add(store: Store, new: NewCustomer | None = None) -> int:
    with store.transaction() as uow:
        return uow.licenses.insert(new or customer(), T0)


class Boom(Exception):
    pass


def fails_after(store: Store, write: Callable[[UnitOfWork], object]) -> None:
    """Run ``write`` in a transaction that then fails."""
    with store.transaction() as uow:
        write(uow)
        raise Boom


# ------------------------------------------------------------------ licenses


def test_a_license_reads_back_by_email_and_by_id(backend: Backend) -> None:
    cid = add(backend.store, customer(current_period_end=T0 + timedelta(days=30)))
    with backend.store.autocommit() as uow:
        by_email = uow.licenses.by_email("a@x.test")
        assert by_email is not None
        assert by_email == uow.licenses.by_id(cid)
    assert by_email.unlock_token == "POSPAL-AAAA"
    assert by_email.current_period_end == T0 + timedelta(days=30)
    assert by_email.last_validation is None
    assert by_email.machine_fingerprint is None


def test_unknown_licenses_are_none(backend: Backend) -> None:
    with backend.store.autocommit() as uow:
        assert uow.licenses.by_email("nobody@x.test") is None
        assert uow.licenses.by_id(404) is None


def test_a_second_license_with_one_email_is_refused(backend: Backend) -> None:
    add(backend.store)
    with pytest.raises(ConstraintViolation):
        add(backend.store, customer(unlock="POSPAL-BBBB"))


def test_a_rolled_back_unit_leaves_no_license(backend: Backend) -> None:
    with pytest.raises(Boom):
        fails_after(backend.store, lambda uow: uow.licenses.insert(customer(), T0))
    with backend.store.autocommit() as uow:
        assert uow.licenses.by_email("a@x.test") is None


def test_a_rolled_back_status_change_is_undone_for_the_next_read(backend: Backend) -> None:
    cid = add(backend.store)
    with backend.store.autocommit() as uow:
        assert uow.licenses.by_email("a@x.test") is not None  # cached, where there is a cache
    seen: list[str] = []

    def suspend(uow: UnitOfWork) -> None:
        uow.licenses.set_status(cid, "inactive", T0)
        seen.append(uow.licenses.by_id(cid).subscription_status)  # type: ignore[union-attr]

    with pytest.raises(Boom):
        fails_after(backend.store, suspend)
    assert seen == ["inactive"]
    with backend.store.autocommit() as uow:
        assert uow.licenses.by_email("a@x.test").subscription_status == "active"  # type: ignore[union-attr]


def test_a_status_change_is_read_at_once(backend: Backend) -> None:
    cid = add(backend.store)
    with backend.store.autocommit() as uow:
        uow.licenses.by_email("a@x.test")
    with backend.store.transaction() as uow:
        uow.licenses.set_status(cid, "cancelled", T0)
        uow.licenses.set_fingerprint(cid, "hash-1")
    with backend.store.autocommit() as uow:
        read = uow.licenses.by_email("a@x.test")
    assert read is not None
    assert (read.subscription_status, read.machine_fingerprint) == ("cancelled", "hash-1")


def test_validation_stamps_are_read_before_and_after_their_flush(backend: Backend) -> None:
    cid = add(backend.store)
    with backend.store.autocommit() as uow:
        uow.licenses.record_validation(cid, T0)
    assert backend.view.pending_stamps() == 1
    with backend.store.autocommit() as uow:
        assert uow.licenses.by_id(cid).last_validation == T0  # type: ignore[union-attr]
    with backend.store.transaction() as uow:
        assert uow.licenses.flush_validations() == 1
    assert backend.view.pending_stamps() == 0
    with backend.other(CustomerView()).autocommit() as uow:  # written: another process reads it
        read = uow.licenses.by_id(cid)
    assert read is not None
    assert (read.last_validation, read.last_seen) == (T0, T0)


def test_a_rolled_back_flush_keeps_its_stamps_for_the_next(backend: Backend) -> None:
    cid = add(backend.store)
    with backend.store.autocommit() as uow:
        uow.licenses.record_validation(cid, T0)
    with pytest.raises(Boom):
        fails_after(backend.store, lambda uow: uow.licenses.flush_validations())
    assert backend.view.pending_stamps() == 1
    with backend.store.transaction() as uow:
        assert uow.licenses.flush_validations() == 1


def test_a_flush_honours_its_limit(backend: Backend) -> None:
    ids = [add(backend.store, customer(f"{n}@x.test", f"POSPAL-{n}")) for n in range(3)]
    with backend.store.autocommit() as uow:
        for cid in ids:
            uow.licenses.record_validation(cid, T0)
    with backend.store.transaction() as uow:
        assert uow.licenses.flush_validations(2) == 2
    assert backend.view.pending_stamps() == 1


# ------------------------------------------------------------------ sessions


def session(sid: str, cid: int, status: str = "active") -> SessionRecord:
    return SessionRecord(sid, cid, status, T0, '{"hostname": "till"}')


def test_a_session_reads_back_and_counts_as_alive(backend: Backend) -> None:
    cid = add(backend.store)
    with backend.store.transaction() as uow:
        uow.sessions.start(session("s1", cid), "fp", "127.0.0.1", T0)
    with backend.store.autocommit() as uow:
        assert uow.sessions.get("s1") == session("s1", cid)
        assert uow.sessions.open_for(cid) == [session("s1", cid)]
        assert uow.sessions.count_alive(T0 - timedelta(seconds=1)) == 1
        assert uow.sessions.count_alive(T0) == 0
        assert uow.sessions.get("nope") is None


def test_a_second_active_session_of_one_license_is_refused(backend: Backend) -> None:
    cid = add(backend.store)
    with backend.store.transaction() as uow:
        uow.sessions.start(session("s1", cid), None, None, T0)
    with pytest.raises(ConstraintViolation), backend.store.transaction() as uow:
        uow.sessions.start(session("s2", cid), None, None, T0)
    with backend.store.autocommit() as uow:
        assert uow.sessions.get("s2") is None


def test_a_session_id_of_another_license_is_refused(backend: Backend) -> None:
    a = add(backend.store)
    b = add(backend.store, customer("b@x.test", "POSPAL-BBBB"))
    with backend.store.transaction() as uow:
        uow.sessions.start(session("s1", a), None, None, T0)
    with pytest.raises(ConstraintViolation), backend.store.transaction() as uow:
        uow.sessions.start(session("s1", b), None, None, T0)


def test_a_session_for_no_license_is_refused(backend: Backend) -> None:
    with pytest.raises(ConstraintViolation), backend.store.transaction() as uow:
        uow.sessions.start(session("s1", 999), None, None, T0)


def test_ending_one_session_lets_another_start_and_restart_revives_own(backend: Backend) -> None:
    cid = add(backend.store)
    later = T0 + timedelta(seconds=30)
    with backend.store.transaction() as uow:
        uow.sessions.start(session("s1", cid), None, None, T0)
        uow.sessions.set_status(["s1"], "ended", later)
        uow.sessions.start(session("s2", cid), None, None, later)
        uow.sessions.touch("s2", later + timedelta(seconds=5))
    with backend.store.transaction() as uow:
        uow.sessions.set_status(["s2"], "kicked", later)
        uow.sessions.start(session("s1", cid), None, None, later)  # its own id: restarted
    with backend.store.autocommit() as uow:
        assert uow.sessions.get("s1").status == "active"  # type: ignore[union-attr]
        assert uow.sessions.get("s1").last_heartbeat == later  # type: ignore[union-attr]
        assert uow.sessions.get("s2").status == "kicked"  # type: ignore[union-attr]
        assert uow.sessions.get("s2").last_heartbeat == later + timedelta(seconds=5)  # type: ignore[union-attr]


def test_a_rolled_back_session_start_leaves_nothing(backend: Backend) -> None:
    cid = add(backend.store)
    with pytest.raises(Boom):
        fails_after(
            backend.store, lambda uow: uow.sessions.start(session("s1", cid), None, None, T0)
        )
    with backend.store.autocommit() as uow:
        assert uow.sessions.open_for(cid) == []


# ------------------------------------------------------------------- billing


def claim(backend: Backend, event_id: str = "evt_1", *, retry: bool = False) -> None:
    with backend.store.transaction() as uow:
        uow.billing.claim_event(event_id, "invoice.paid", T0, T0, T0 + LEASE, retry=retry)


def test_the_first_claim_of_an_event_holds_and_a_second_is_refused(backend: Backend) -> None:
    claim(backend)
    with backend.store.autocommit() as uow:
        row = uow.billing.webhook_event("evt_1")
        assert uow.billing.webhook_event("evt_2") is None
    assert row is not None
    assert (row.status, row.outcome, row.retry_count, row.lease_until) == (
        "processing",
        None,
        0,
        T0 + LEASE,
    )
    assert row.received_at == T0
    with pytest.raises(ConstraintViolation):
        claim(backend)


def test_a_finished_event_is_completed_without_lease(backend: Backend) -> None:
    claim(backend)
    with backend.store.transaction() as uow:
        uow.billing.finish_event("evt_1", "applied", None, T0)
    with backend.store.autocommit() as uow:
        row = uow.billing.webhook_event("evt_1")
    assert row is not None
    assert (row.status, row.outcome, row.lease_until) == ("completed", "applied", None)


def test_a_rolled_back_claim_leaves_no_claim(backend: Backend) -> None:
    with pytest.raises(Boom):
        fails_after(
            backend.store,
            lambda uow: uow.billing.claim_event(
                "evt_1", "invoice.paid", T0, T0, T0 + LEASE, retry=False
            ),
        )
    with backend.store.autocommit() as uow:
        assert uow.billing.webhook_event("evt_1") is None


def test_a_failed_event_is_recorded_and_its_retry_counted(backend: Backend) -> None:
    with backend.store.transaction() as uow:
        uow.billing.fail_event("evt_1", "invoice.paid", "handler failed: KeyError", T0)
    with backend.store.autocommit() as uow:
        failed = uow.billing.webhook_event("evt_1")
    assert failed is not None
    assert (failed.status, failed.retry_count, failed.lease_until) == ("failed", 0, None)
    claim(backend, retry=True)
    with backend.store.transaction() as uow:
        uow.billing.fail_event("evt_1", "invoice.paid", "again", T0)  # an existing row
    claim(backend, retry=True)
    with backend.store.autocommit() as uow:
        retried = uow.billing.webhook_event("evt_1")
    assert retried is not None
    assert (retried.status, retried.retry_count, retried.lease_until) == (
        "processing",
        2,
        T0 + LEASE,
    )


def _undone(uow: UnitOfWork) -> None:
    with uow.savepoint():
        uow.billing.claim_event("evt_undone", "invoice.paid", T0, T0, T0 + LEASE, retry=False)
        uow.licenses.insert(customer("undone@x.test"), T0)
        # Read (and cached) inside: the rollback must not leave it in the cache.
        assert uow.licenses.by_email("undone@x.test") is not None
        raise Boom


def test_a_failed_savepoint_undoes_its_own_writes_and_the_unit_goes_on(backend: Backend) -> None:
    with backend.store.transaction() as uow:
        with uow.savepoint():
            uow.billing.claim_event("evt_kept", "invoice.paid", T0, T0, T0 + LEASE, retry=False)
        with pytest.raises(Boom):
            _undone(uow)
        assert uow.billing.webhook_event("evt_undone") is None
        with uow.savepoint():
            uow.licenses.insert(customer("after@x.test"), T0)
    with backend.store.autocommit() as uow:
        assert uow.billing.webhook_event("evt_kept") is not None
        assert uow.billing.webhook_event("evt_undone") is None
        assert uow.licenses.by_email("undone@x.test") is None
        assert uow.licenses.by_email("after@x.test") is not None


def test_a_refused_write_in_a_savepoint_is_raised_and_the_unit_still_commits(
    backend: Backend,
) -> None:
    with backend.store.transaction() as uow:
        uow.billing.claim_event("evt_1", "invoice.paid", T0, T0, T0 + LEASE, retry=False)
        again = uow.savepoint()
        with pytest.raises(ConstraintViolation), again:
            uow.billing.claim_event("evt_1", "invoice.paid", T0, T0, T0 + LEASE, retry=False)
    with backend.store.autocommit() as uow:
        row = uow.billing.webhook_event("evt_1")
    assert row is not None
    assert row.status == "processing"


def test_billing_state_reads_back_as_saved(backend: Backend) -> None:
    state = BillingState(
        status=SubscriptionStatus.INACTIVE,
        version=Version(1_700_000_000, 2, "evt_2"),
        period_end=T0 + timedelta(days=30),
        subscription_id="sub_1",
        subscription_version=Version(1_700_000_000, 1, "evt_1"),
        payment_failures=2,
    )
    with backend.store.transaction() as uow:
        assert uow.billing.billing_state("cus_1") is None
        uow.billing.save_billing_state("cus_1", replace(state, status=None, version=None), T0)
        uow.billing.save_billing_state("cus_1", state, T0)  # an upsert
    with backend.store.autocommit() as uow:
        assert uow.billing.billing_state("cus_1") == state


def test_a_license_is_found_by_stripe_customer_then_unlinked_by_email(backend: Backend) -> None:
    cid = add(backend.store)
    with backend.store.transaction() as uow:
        found = uow.billing.license_for("cus_1", " A@x.test ")
        assert found is not None
        assert found.id == cid
        assert uow.billing.stripe_customer_id(cid) is None
        uow.billing.link(cid, "cus_1", T0, checkout_session_id="cs_1", name="Other")
    with backend.store.autocommit() as uow:
        linked = uow.billing.license_for("cus_1", None)
        assert uow.billing.license_for("cus_2", "a@x.test") is None  # linked elsewhere now
        assert uow.billing.stripe_customer_id(cid) == "cus_1"
    assert linked is not None
    assert (linked.id, linked.stripe_session_id, linked.name) == (cid, "cs_1", "Ann")
    with backend.store.transaction() as uow:
        uow.billing.link(cid, "cus_1", T0)  # no session id: the old one stays
    with backend.store.autocommit() as uow:
        assert uow.licenses.by_email("a@x.test").stripe_session_id == "cs_1"  # type: ignore[union-attr]


def test_applied_billing_reaches_the_license(backend: Backend) -> None:
    cid = add(backend.store, customer(subscription_id="sub_old"))
    end = T0 + timedelta(days=30)
    with backend.store.autocommit() as uow:
        uow.licenses.by_email("a@x.test")
    with backend.store.transaction() as uow:
        uow.billing.apply_billing(
            cid, BillingState(SubscriptionStatus.ACTIVE, None, end, None, None, 0), T0
        )
    with backend.store.autocommit() as uow:
        active = uow.licenses.by_email("a@x.test")
    assert active is not None
    assert (active.subscription_status, active.current_period_end) == ("active", end)
    assert (active.next_billing_date, active.subscription_id) == (end, "sub_old")
    with backend.store.transaction() as uow:
        suspended = BillingState(SubscriptionStatus.INACTIVE, None, end, "sub_new", None, 0)
        uow.billing.apply_billing(cid, suspended, T0)
    with backend.store.autocommit() as uow:
        inactive = uow.licenses.by_id(cid)
    assert inactive is not None
    assert (inactive.subscription_status, inactive.next_billing_date) == ("inactive", None)
    assert inactive.subscription_id == "sub_new"


def test_a_refund_is_recorded_once(backend: Backend) -> None:
    refund = Refund("re_1", "ch_1", 2000, "eur")
    with backend.store.transaction() as uow:
        assert uow.billing.record_refund(None, refund, T0) is True
        assert uow.billing.record_refund(None, refund, T0) is False


def test_another_process_forgets_a_changed_license_it_would_answer_from(
    backend: Backend,
) -> None:
    add(backend.store)
    add(backend.store, customer("b@x.test", "POSPAL-BBBB"))
    view = CustomerView()
    other = backend.other(view)
    with other.autocommit() as uow:
        # A worker that has been serving: it has validated both licenses before.
        for email in ("a@x.test", "b@x.test"):
            found = uow.licenses.by_email(email)
            assert found is not None
            view.confirm(found)
    with backend.store.transaction() as uow:
        uow.billing.note_license_change("a@x.test", T0)
    with other.autocommit() as uow:
        uow.licenses.by_email("b@x.test")
    # Its degraded answers: none for the changed license, the other kept.
    assert view.last_known_good("a@x.test") is None
    assert view.last_known_good("b@x.test") is not None
    other.close()


# -------------------------------------------------------------------- outbox


def email(recipient: str = "a@x.test", key: str | None = None) -> NewEmail:
    return NewEmail("welcome", recipient, None, {"name": "Ann"}, key)


def test_an_email_with_a_known_dedupe_key_is_not_queued_twice(backend: Backend) -> None:
    with backend.store.transaction() as uow:
        assert uow.outbox.enqueue(email(key="welcome:cs_1"), T0) is True
        assert uow.outbox.enqueue(email(key="welcome:cs_1"), T0) is False
        assert uow.outbox.enqueue(email(), T0) is True  # no key: never a duplicate
        assert uow.outbox.enqueue(email(), T0) is True
    with backend.store.autocommit() as uow:
        assert uow.outbox.pending_count() == 3


def test_due_emails_are_claimed_for_one_lease(backend: Backend) -> None:
    with backend.store.transaction() as uow:
        uow.outbox.enqueue(email("a@x.test"), T0)
        uow.outbox.enqueue(email("b@x.test"), T0 + timedelta(seconds=1))
    with backend.store.transaction() as uow:
        first = uow.outbox.claim_due(T0 + timedelta(seconds=1), 1, LEASE)
        second = uow.outbox.claim_due(T0 + timedelta(seconds=1), 10, LEASE)
        again = uow.outbox.claim_due(T0 + timedelta(seconds=1), 10, LEASE)
    assert [(e.recipient, e.attempts, e.payload) for e in first] == [
        ("a@x.test", 0, {"name": "Ann"})
    ]
    assert [e.recipient for e in second] == ["b@x.test"]
    assert again == []
    with backend.store.transaction() as uow:
        expired = uow.outbox.claim_due(T0 + LEASE + timedelta(seconds=2), 10, LEASE)
    assert [e.recipient for e in expired] == ["a@x.test", "b@x.test"]


def test_delivery_outcomes_are_recorded(backend: Backend) -> None:
    with backend.store.transaction() as uow:
        for who in ("a", "b", "c"):
            uow.outbox.enqueue(email(f"{who}@x.test"), T0)
    with backend.store.autocommit() as uow:
        ids = [row["id"] for row in uow.outbox.listing(10)]
    with backend.store.transaction() as uow:
        uow.outbox.mark_delivered(ids[0], "re_1", T0)
        uow.outbox.mark_retry(ids[1], "timeout", T0 + timedelta(seconds=30))
        uow.outbox.mark_failed(ids[2], "bad address")
    with backend.store.autocommit() as uow:
        rows = uow.outbox.listing(10)
        only_b = uow.outbox.listing(10, ["b@x.test"])
        assert uow.outbox.pending_count() == 1
    assert [(r["delivery_status"], r["attempts"], r["last_error"]) for r in rows] == [
        ("delivered", 1, None),
        ("pending", 1, "timeout"),
        ("failed", 1, "bad address"),
    ]
    assert rows[0]["delivered_at"] == "2026-03-01 12:00:00.123456"
    assert rows[1]["next_attempt_at"] == "2026-03-01 12:00:30.123456"
    assert rows[2]["created_at"] == "2026-03-01 12:00:00.123456"
    assert set(rows[0]) == {
        "id",
        "customer_id",
        "email_type",
        "recipient",
        "payload",
        "delivery_status",
        "attempts",
        "next_attempt_at",
        "last_error",
        "created_at",
        "delivered_at",
    }
    assert [r["recipient"] for r in only_b] == ["b@x.test"]


# --------------------------------------------------------------------- audit


def entry(action: str) -> AuditEntry:
    return AuditEntry(action, "success", None, "req_1", "127.0.0.1", T0, {"k": "v"})


def test_audit_rows_commit_with_their_unit_and_roll_back_with_it(backend: Backend) -> None:
    with backend.store.transaction() as uow:
        uow.audit.record([entry("kept"), entry("kept too")])
    with pytest.raises(Boom):
        fails_after(backend.store, lambda uow: uow.audit.record([entry("rolled back")]))
    assert backend.audit_actions() == ["kept", "kept too"]


# -------------------------------------------------------------------- faults


def test_a_failing_database_refuses_every_scope_and_the_ping(backend: Backend) -> None:
    backend.fail()
    with pytest.raises(StorageUnavailable), backend.store.transaction():
        pass
    with pytest.raises(StorageUnavailable), backend.store.autocommit():
        pass
    with pytest.raises(StorageUnavailable):
        backend.store.ping()


def test_the_fake_refuses_a_unit_opened_inside_another() -> None:
    store = MemoryStore()
    with store.autocommit(), pytest.raises(NestedUnit), store.transaction():
        pass
    with store.transaction():  # the refused one left the store usable
        pass
