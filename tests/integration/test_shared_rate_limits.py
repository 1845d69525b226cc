"""Failed-attempt limits shared by replicas (``uow.rate_limits``): two services
on one database, as two replica processes are, on the in-memory store, a real
SQLite file and a real PostgreSQL database (skipped without a server). The
feed moves only when each replica's flusher runs (``share_failures``), which
these tests call by hand at a fixed ``now``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from licensing_service.adapters.memory import MemoryStore, MemoryTables
from licensing_service.adapters.sqlite_migrations import migrate
from licensing_service.adapters.sqlite_store import SqliteStore
from licensing_service.bootstrap import build_service
from licensing_service.config import Settings
from licensing_service.contract.faults import DbFault
from licensing_service.service.customer_view import CustomerView
from licensing_service.service.errors import InvalidCredentials, RateLimited
from licensing_service.service.licensing import Call, LicensingService
from licensing_service.service.ports import NewCustomer, Store

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
EMAIL = "till@x.test"
TOKEN = "POSPAL-AAAA-BBBB-CCCC-DDDD"
LIMIT = 4  # per email; the per-IP limit is left far above it


@dataclass
class Replicas:
    stores: list[Store]
    services: list[LicensingService]
    failures: Callable[[], int]  # rows in the shared table

    def attempt(self, which: int, token: str, now: datetime = T0, ip: str = "10.0.0.1") -> str:
        """What one validation on replica ``which`` answered."""
        try:
            self.services[which].validate(Call("r", ip, now), EMAIL, token, None, True)
        except InvalidCredentials:
            return "invalid"
        except RateLimited:
            return "limited"
        return "valid"

    def share(self, now: datetime = T0) -> list[int]:
        return [service.share_failures(now) for service in self.services]


def _settings(tmp_path: Path) -> Settings:
    return Settings(db=tmp_path / "x.db", rate_limit_email=LIMIT, rate_limit_ip=1000)


def _memory(tmp_path: Path, views: list[CustomerView]) -> tuple[list[Store], Callable[[], int]]:
    tables = MemoryTables()
    stores: list[Store] = [MemoryStore(tables, view=view) for view in views]
    return stores, lambda: len(tables.failures)


def _sqlite(tmp_path: Path, views: list[CustomerView]) -> tuple[list[Store], Callable[[], int]]:
    path = tmp_path / "shared.db"
    stores = []
    for view in views:
        # Re-reads data_version at every scope: the test does not wait out the 1 ms.
        store = SqliteStore(path, background_checkpoints=False, view=view, revalidate_seconds=0)
        migrate(store.connection(), T0)
        stores.append(store)

    def rows() -> int:
        return int(
            stores[0].connection().execute("SELECT COUNT(*) FROM rate_limit_failures").fetchone()[0]
        )

    return list(stores), rows


def _postgres(url: str, views: list[CustomerView]) -> tuple[list[Store], Callable[[], int]]:
    from licensing_service.adapters.pg_store import PgStore, pool

    stores: list[PgStore] = [
        PgStore(pool(url, max_size=1), view=view, revalidate_seconds=0) for view in views
    ]

    def rows() -> int:
        with stores[0].autocommit() as uow:
            return len(uow.rate_limits.failures_after(0, 10_000))

    return list(stores), rows


BACKENDS = {"memory": _memory, "sqlite": _sqlite}


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Replicas]]:
    made: list[Store] = []
    where = request.getfixturevalue("pg_url") if request.param == "postgres" else tmp_path

    def build(count: int = 2, *, shared: bool = True) -> Replicas:
        views = [CustomerView() for _ in range(count)]
        if request.param == "postgres":
            stores, failures = _postgres(str(where), views)
        else:
            stores, failures = BACKENDS[request.param](where, views)
        made.extend(stores)
        services = [
            build_service(_settings(tmp_path), store, view)
            for store, view in zip(stores, views, strict=True)
        ]
        if not shared:  # the per-process limiter this replaced
            for service in services:
                service.limits = replace(service.limits, shared=None)
        with stores[0].transaction() as uow:
            uow.licenses.insert(NewCustomer(EMAIL, "Till", TOKEN, "active"), T0)
        return Replicas(stores, services, failures)

    yield build
    for store in made:
        store.close()


@pytest.mark.parametrize("shared", [True, False], ids=["shared", "per-process"])
def test_a_brute_force_spread_over_two_replicas_meets_one_limit(
    make: Callable[..., Replicas], shared: bool
) -> None:
    replicas = make(shared=shared)
    seen = [replicas.attempt(i % 2, "POSPAL-WRONG") for i in range(LIMIT)]
    assert seen == ["invalid"] * LIMIT
    replicas.share()
    replicas.share()  # the first replica reads what the second wrote after it
    answers = [replicas.attempt(0, TOKEN), replicas.attempt(1, TOKEN)]
    if shared:
        assert answers == ["limited", "limited"]
    else:
        # Each process saw half the limit: the per-process limiter lets it go on,
        # up to LIMIT failures per replica in the window.
        assert answers == ["valid", "valid"]


def test_a_validation_that_does_not_fail_writes_nothing(make: Callable[..., Replicas]) -> None:
    replicas = make()
    for _ in range(20):
        assert replicas.attempt(0, TOKEN) == "valid"
    replicas.share()
    assert replicas.failures() == 0
    assert replicas.attempt(0, "POSPAL-WRONG") == "invalid"
    assert replicas.failures() == 0  # queued, not written by the request itself
    replicas.share()
    assert replicas.failures() == 2  # the email and the address


def test_the_failures_are_learnt_within_one_flush_each(make: Callable[..., Replicas]) -> None:
    replicas = make()
    for _ in range(LIMIT):
        replicas.attempt(0, "POSPAL-WRONG")
    assert replicas.attempt(1, TOKEN) == "valid"  # replica 0 has not flushed yet
    assert replicas.services[0].share_failures(T0) == 0  # its own are not news to it
    assert replicas.attempt(1, TOKEN) == "valid"  # written, not yet read by replica 1
    assert replicas.services[1].share_failures(T0) == 2 * LIMIT
    assert replicas.attempt(1, TOKEN) == "limited"


def test_a_replica_started_later_learns_the_failures_in_the_window(
    make: Callable[..., Replicas],
) -> None:
    replicas = make(3)
    for i in range(LIMIT):
        replicas.attempt(0, "POSPAL-WRONG", T0 + timedelta(seconds=i))
    replicas.services[0].share_failures(T0)
    late = T0 + timedelta(seconds=600.5)  # the default window: the first failure is out
    assert replicas.services[2].share_failures(late) == 2 * (LIMIT - 1)
    assert replicas.attempt(2, TOKEN, late) == "valid"
    assert replicas.attempt(2, "POSPAL-WRONG", late) == "invalid"
    assert replicas.attempt(2, TOKEN, late) == "limited"


def test_old_failures_are_pruned(make: Callable[..., Replicas]) -> None:
    replicas = make()
    replicas.attempt(0, "POSPAL-WRONG")
    replicas.share()
    assert replicas.failures() == 2
    later = T0 + timedelta(seconds=601)
    replicas.attempt(0, "POSPAL-WRONG", later)
    replicas.services[0].share_failures(later)
    assert replicas.failures() == 2  # the first pair is outside the window: gone


def test_failures_queued_while_the_database_refuses_are_written_after(
    make: Callable[..., Replicas],
) -> None:
    replicas = make()
    replicas.attempt(0, "POSPAL-WRONG")
    store = replicas.stores[0]
    store.faults.set(DbFault(errors=True))  # type: ignore[attr-defined]
    assert replicas.services[0].share_failures(T0) == 0
    store.faults.set(DbFault())  # type: ignore[attr-defined]
    replicas.services[0].breaker.record_success(T0)  # closed again for the next flush
    assert replicas.failures() == 0
    replicas.services[0].share_failures(T0)
    assert replicas.failures() == 2
