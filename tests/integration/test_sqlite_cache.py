"""The SQLite store keeping the customer view coherent: fresh rows and
group-committed validation stamps."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from licensing_service.adapters.sqlite_migrations import migrate
from licensing_service.adapters.sqlite_store import SqliteStore, connect
from licensing_service.contract import routes
from licensing_service.contract.faults import DbFault
from licensing_service.service.errors import StorageUnavailable
from licensing_service.service.ports import NewCustomer
from tests.conftest import add_customer
from tests.live import LiveServer
from tests.shapes import error_code
from tests.ticks import Ticks

T0 = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture
def ticks() -> Ticks:
    return Ticks()


@pytest.fixture
def store(tmp_path: Path, ticks: Ticks) -> SqliteStore:
    s = SqliteStore(
        tmp_path / "c.db", background_checkpoints=False, revalidate_seconds=0.001, monotonic=ticks
    )
    migrate(s.connection(), T0)
    with s.transaction() as uow:
        uow.licenses.insert(NewCustomer("a@x.test", "A", "POSPAL-AAAA", "active"), T0)
    return s


def read(store: SqliteStore, email: str = "a@x.test"):  # type: ignore[no-untyped-def]
    with store.autocommit() as uow:
        return uow.licenses.by_email(email)


def test_another_connections_commit_is_seen_within_the_revalidation_window(
    store: SqliteStore, ticks: Ticks
) -> None:
    assert read(store).subscription_status == "active"
    assert store.view.fresh_rows() == 1
    other = connect(store.path)
    other.execute("UPDATE customers SET subscription_status = 'inactive' WHERE email = 'a@x.test'")
    ticks.now += 0.0005
    assert read(store).subscription_status == "active"  # same millisecond: same reading
    ticks.now += 0.0005
    assert read(store).subscription_status == "inactive"


def test_own_status_change_discards_the_cached_row(store: SqliteStore) -> None:
    record = read(store)
    with store.transaction() as uow:
        uow.licenses.set_status(record.id, "cancelled", T0)
    assert read(store).subscription_status == "cancelled"


def test_stamps_are_exact_before_and_after_the_group_commit(store: SqliteStore) -> None:
    record = read(store)
    with store.autocommit() as uow:
        uow.licenses.record_validation(record.id, T0)
    assert read(store).last_validation == T0  # from the cache, before any flush
    store.view.invalidate_all()
    assert read(store).last_validation == T0  # re-read from disk, overlaid with the pending stamp
    with store.transaction() as uow:
        assert uow.licenses.flush_validations() == 1
    assert store.view.pending_stamps() == 0
    row = (
        store.connection()
        .execute("SELECT last_validation, last_seen FROM customers WHERE id = ?", (record.id,))
        .fetchone()
    )
    assert row == ("2026-03-01 00:00:00.000000", "2026-03-01 00:00:00.000000")


def test_a_rolled_back_flush_keeps_the_stamps(store: SqliteStore) -> None:
    record = read(store)
    with store.autocommit() as uow:
        uow.licenses.record_validation(record.id, T0)

    def flush_then_fail() -> None:
        with store.transaction() as uow:
            uow.licenses.flush_validations()
            raise RuntimeError("commit never happens")

    with pytest.raises(RuntimeError):
        flush_then_fail()
    assert store.view.pending_stamps() == 1
    later = T0 + timedelta(seconds=5)
    with store.autocommit() as uow:
        uow.licenses.record_validation(record.id, later)  # a newer stamp replaces the older one
    with store.transaction() as uow:
        uow.licenses.flush_validations()
    last = store.connection().execute("SELECT last_validation FROM customers").fetchone()[0]
    assert last == "2026-03-01 00:00:05.000000"


def test_an_injected_fault_blocks_reads_from_the_cache_too(store: SqliteStore) -> None:
    read(store)
    store.faults.set(DbFault(errors=True))
    with pytest.raises(StorageUnavailable), store.autocommit():
        pass


def test_suspension_by_another_connection_reaches_the_next_request(
    server: LiveServer, client: httpx.Client
) -> None:
    c = add_customer(server)
    body = {"operation": "validate", "credentials": {"email": c.email, "token": c.token}}
    assert client.post(routes.VALIDATE_UNIFIED, json=body).status_code == 200
    other = connect(server.db_path)
    other.execute("UPDATE customers SET subscription_status = 'inactive' WHERE id = ?", (c.id,))
    refused = client.post(routes.VALIDATE_UNIFIED, json=body)
    assert refused.status_code == 403
    assert error_code(refused) == "SUBSCRIPTION_INACTIVE"


def test_tier_is_exact_across_flushes(server: LiveServer, client: httpx.Client) -> None:
    c = add_customer(server)
    body = {"operation": "validate", "credentials": {"email": c.email, "token": c.token}}
    client.post(routes.VALIDATE_UNIFIED, json=body)
    server.run(lambda: server.parts.service.flush_audit(server.clock.now()))
    server.run(lambda: server.sqlite().view.invalidate_all())
    server.clock.advance(3599)
    assert client.post(routes.VALIDATE_UNIFIED, json=body).json()["caching"]["duration"] == 3600


def test_a_rolled_back_write_leaves_no_trace_in_the_cache(store: SqliteStore) -> None:
    record = read(store)

    def change_then_fail() -> None:
        with store.transaction() as uow:
            uow.licenses.set_status(record.id, "inactive", T0)
            assert uow.licenses.by_email("a@x.test").subscription_status == "inactive"
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        change_then_fail()
    assert read(store).subscription_status == "active"

    def switch_then_fail() -> None:
        with store.transaction() as uow:
            uow.licenses.set_fingerprint(record.id, "new-hash")
            uow.licenses.by_email("a@x.test")
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        switch_then_fail()
    assert read(store).machine_fingerprint is None


def test_a_failed_commit_leaves_no_trace_in_the_cache(store: SqliteStore) -> None:
    record = read(store)
    conn = store.connection()

    def change_then_fail_at_commit() -> None:
        with store.transaction() as uow:
            # Foreign keys checked at COMMIT (for this transaction only), then broken:
            # the COMMIT itself fails, after every statement succeeded.
            conn.execute("PRAGMA defer_foreign_keys = ON")
            uow.licenses.set_status(record.id, "inactive", T0)
            assert uow.licenses.by_email("a@x.test").subscription_status == "inactive"
            conn.execute(
                "INSERT INTO active_sessions (session_id, customer_id, status, started_at,"
                " last_heartbeat) VALUES ('s-1', 999999, 'ended', 't', 't')"
            )

    with pytest.raises(StorageUnavailable):
        change_then_fail_at_commit()
    assert read(store).subscription_status == "active"
