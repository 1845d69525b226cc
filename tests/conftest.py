from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from licensing_service.config import Settings
from licensing_service.domain.credentials import new_unlock_token
from licensing_service.service.ports import NewCustomer
from tests.live import LiveServer

_ids = itertools.count(1)
TEST_WEBHOOK_SECRET = "whsec_test_secret_for_the_harness"


@dataclass(frozen=True)
class Customer:
    id: int
    email: str
    token: str
    stripe_session_id: str


def test_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "db": tmp_path / "licensing.db",
        "test_clock": True,
        "environment": "test",
        "rate_limit_ip": 100_000,
        "rate_limit_email": 100_000,
        "stripe_webhook_secret": TEST_WEBHOOK_SECRET,
    }
    values.update(overrides)
    return Settings(**values)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A module that sets ``STORES = ("sqlite", "postgres")`` runs its tests on
    each store: its ``server`` and ``make_server`` serve from that one."""
    stores = getattr(metafunc.module, "STORES", None)
    if stores and metafunc.definition.get_closest_marker("before_the_store"):
        stores = stores[:1]  # refused before any store is reached: one is enough
    if stores and "store_kind" in metafunc.fixturenames:
        metafunc.parametrize("store_kind", stores, indirect=True, scope="module")


@pytest.fixture(scope="module")
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(getattr(request, "param", "sqlite"))


def _store_overrides(store_kind: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    if store_kind != "postgres":
        return {}
    # The worker's database, shared by the module's servers: tests use their own
    # licenses (unique emails), as they do on one SQLite file per module.
    return {"db": request.getfixturevalue("pg_database")}


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, store_kind: str, request: pytest.FixtureRequest
) -> Iterator[LiveServer]:
    overrides = _store_overrides(store_kind, request)
    live = LiveServer(test_settings(tmp_path_factory.mktemp("srv"), **overrides)).start()
    yield live
    live.stop()


@pytest.fixture
def make_server(
    tmp_path: Path, store_kind: str, request: pytest.FixtureRequest
) -> Iterator[Callable[..., LiveServer]]:
    started: list[LiveServer] = []
    store = _store_overrides(store_kind, request)

    def make(**overrides: Any) -> LiveServer:
        transport = overrides.pop("transport", None)
        sub = tmp_path / f"srv{len(started)}"
        sub.mkdir()
        if store and not started:
            # A test's own servers start from an empty PostgreSQL database, as
            # from a new SQLite file (the module's server makes its licenses anew).
            from tests import pg

            pg.truncate(store["db"])
        settings = test_settings(sub, **{**store, **overrides})
        live = LiveServer(settings, transport=transport).start()
        started.append(live)
        return live

    yield make
    for live in started:
        live.stop()


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as http:
        yield http


def add_customer(
    server: LiveServer,
    *,
    status: str = "active",
    period_end: timedelta | None = timedelta(days=30),
    name: str | None = "Test Till",
) -> Customer:
    n = next(_ids)
    email = f"till-{n}-{id(server)}@example.test"
    token = new_unlock_token()
    stripe_session = f"cs_test_{n}_{id(server)}"

    def insert() -> int:
        now: datetime = server.clock.now()
        with server.parts.store.transaction() as uow:
            return uow.licenses.insert(
                NewCustomer(
                    email=email,
                    name=name,
                    unlock_token=token,
                    subscription_status=status,
                    stripe_session_id=stripe_session,
                    subscription_id=f"sub_{n}",
                    current_period_end=None if period_end is None else now + period_end,
                ),
                now,
            )

    return Customer(server.run(insert), email, token, stripe_session)


@pytest.fixture
def customer(server: LiveServer) -> Customer:
    return add_customer(server)


@pytest.fixture(scope="session")
def pg_database(worker_id: str) -> Iterator[str]:
    """This xdist worker's PostgreSQL database (tests/pg.py); skips without a server."""
    from tests import pg

    yield from pg.session_database(worker_id)


@pytest.fixture
def pg_url(pg_database: str) -> str:
    """The worker's PostgreSQL database, emptied for this test."""
    from tests import pg

    pg.truncate(pg_database)
    return pg_database
