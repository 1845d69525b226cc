"""Regressions found in review: each test fails on the code before its fix."""

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from licensing_service.adapters.email import SinkTransport
from licensing_service.adapters.sqlite_migrations import migrate
from licensing_service.adapters.sqlite_store import SqliteStore
from licensing_service.bootstrap import build_service
from licensing_service.config import Settings
from licensing_service.contract import routes
from licensing_service.domain.breaker import BreakerState, CircuitBreaker
from licensing_service.service.emails import EmailType, compose
from licensing_service.service.errors import Unavailable
from licensing_service.service.guard import StoreGuard
from licensing_service.service.outbox import Deliverer
from licensing_service.service.ports import NewCustomer, QueuedEmail
from tests.conftest import Customer, add_customer
from tests.live import LiveServer

T0 = datetime(2026, 4, 1, tzinfo=UTC)


def guarded(store: SqliteStore) -> StoreGuard:
    return StoreGuard(store, CircuitBreaker())


def validate(client: httpx.Client, c: Customer, fingerprint: str) -> httpx.Response:
    return client.post(
        routes.VALIDATE_UNIFIED,
        json={
            "operation": "validate",
            "credentials": {"email": c.email, "token": c.token},
            "device": {"machineFingerprint": fingerprint},
        },
    )


class CommitFailsOnce:
    """The serving connection, except that the next COMMIT fails (a full disk)."""

    def __init__(self, real: sqlite3.Connection) -> None:
        self.real = real
        self.armed = False

    def execute(self, sql: str, *args: object) -> sqlite3.Cursor:
        if self.armed and sql == "COMMIT":
            self.armed = False
            raise sqlite3.OperationalError("database or disk is full")
        return self.real.execute(sql, *args)

    def __getattr__(self, name: str) -> object:
        return getattr(self.real, name)


def test_a_machine_switch_whose_commit_fails_is_reported_again(make_server) -> None:  # type: ignore[no-untyped-def]
    server: LiveServer = make_server()
    c = add_customer(server)
    store = server.sqlite()
    proxy = CommitFailsOnce(store._conn)
    server.run(lambda: setattr(store, "_conn", proxy))
    with httpx.Client(base_url=server.url) as client:
        assert validate(client, c, "till-A").status_code == 200  # first activation
        proxy.armed = True
        during = validate(client, c, "till-B")  # the switch's COMMIT fails
        assert during.status_code == 200
        assert during.json()["degraded"] is True
        assert not proxy.armed
        after = validate(client, c, "till-B")
        assert after.json()["session"]["machineChanged"] is True
    sql = "SELECT COUNT(*) FROM email_log WHERE customer_id = ? AND email_type = ?"
    emails = server.run(lambda: proxy.real.execute(sql, (c.id, "machine_switch")).fetchone()[0])
    assert emails == 1


class YieldingSink(SinkTransport):
    """Suspends like a real HTTP call, so two deliverers really interleave."""

    async def send(self, email: QueuedEmail, subject: str, text: str) -> str:
        await asyncio.sleep(0)
        return await super().send(email, subject, text)


def deliver_with_two_workers(tmp_path: Path, lease: timedelta) -> list[str]:
    db = tmp_path / f"mail-{lease.total_seconds()}.db"
    first = SqliteStore(db, background_checkpoints=False)
    migrate(first.connection(), T0)
    with first.transaction() as uow:
        for n in range(20):
            uow.outbox.enqueue(compose(EmailType.REACTIVATION, f"t{n}@x.test", None), T0)
    second = SqliteStore(db, background_checkpoints=False)
    sink = tmp_path / f"sink-{lease.total_seconds()}.jsonl"

    async def both() -> None:
        for _ in range(3):
            await asyncio.gather(
                Deliverer(guarded(first), YieldingSink(sink), lease=lease).run_once(T0, batch=8),
                Deliverer(guarded(second), YieldingSink(sink), lease=lease).run_once(T0, batch=8),
            )

    asyncio.run(both())
    return sink.read_text().splitlines()


def test_two_workers_deliver_each_email_once(tmp_path: Path) -> None:
    sent = deliver_with_two_workers(tmp_path, lease=timedelta(minutes=2))
    assert len(sent) == 20
    assert len(set(sent)) == 20
    # Without a lease, the same run sends duplicates: the claim is what prevents them.
    unclaimed = deliver_with_two_workers(tmp_path, lease=timedelta(0))
    assert len(unclaimed) > 20


def test_a_half_open_trial_reaches_the_database_even_from_the_cache(tmp_path: Path) -> None:
    settings = Settings(db=tmp_path / "b.db")
    # No data_version read to trip over.
    store = SqliteStore(tmp_path / "b.db", background_checkpoints=False, revalidate_seconds=3600)
    migrate(store.connection(), T0)
    with store.transaction() as uow:
        uow.licenses.insert(NewCustomer("h@x.test", None, "POSPAL-H", "active"), T0)
    service = build_service(settings, store, store.view)
    for _ in range(5):
        service.breaker.record_failure(T0)
    store.connection().close()  # the database is really gone now
    trial_time = T0 + timedelta(seconds=30)
    with pytest.raises(Unavailable), service._tx(trial_time, atomic=False):
        pass
    assert service.breaker.state is BreakerState.OPEN
