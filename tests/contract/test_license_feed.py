"""The license_changes feed stays bounded (adapters/license_feed.py), on SQLite
and PostgreSQL: the audit flusher's job prunes what is older than the
retention, at most every LICENSE_CHANGES_PRUNE_EVERY of the service's clock,
and a reader whose cursor the pruning passed forgets every license rather
than miss a change. Time is a hand-moved clock; nothing sleeps."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from licensing_service.adapters.clock import ManualClock
from licensing_service.adapters.pg_store import PgStore
from licensing_service.adapters.sqlite_store import SqliteStore
from licensing_service.bootstrap import _flush
from licensing_service.domain.breaker import CircuitBreaker
from licensing_service.domain.rate_limit import FailureLimiter
from licensing_service.service.audit import AuditBuffer
from licensing_service.service.customer_view import CustomerView
from licensing_service.service.licensing import (
    LICENSE_CHANGES_PRUNE_EVERY,
    LICENSE_CHANGES_RETENTION,
    LicensingService,
    Limits,
)
from licensing_service.service.ports import NewCustomer, Store
from tests.contract.test_repositories import T0, Backend, _postgres, _sqlite


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "postgres":
        made = _postgres(tmp_path, request.getfixturevalue("pg_url"))
    else:
        made = _sqlite(tmp_path)
    yield made
    made.store.close()


def feed(store: Store) -> list[str]:
    """The feed's emails, oldest first, read straight from the database."""
    sql = "SELECT email FROM license_changes ORDER BY seq"
    if isinstance(store, SqliteStore):
        return [row[0] for row in store.connection().execute(sql).fetchall()]
    assert isinstance(store, PgStore)
    with store.pool.connection() as conn:
        return [str(row[0]) for row in conn.execute(sql.encode()).fetchall()]


def note(store: Store, email: str, at: datetime) -> None:
    with store.transaction() as uow:
        uow.billing.note_license_change(email, at)


def service_on(store: Store) -> LicensingService:
    window = timedelta(minutes=15)
    return LicensingService(
        store,
        CircuitBreaker(5, timedelta(seconds=30)),
        Limits(per_ip=FailureLimiter(20, window), per_email=FailureLimiter(5, window)),
        AuditBuffer(),
        CustomerView(),
    )


def test_the_flusher_prunes_the_feed_past_its_retention_at_most_every_ten_minutes(
    backend: Backend,
) -> None:
    store = backend.store
    service = service_on(store)
    clock = ManualClock(T0)
    note(store, "old@x.test", T0)
    note(store, "newer@x.test", T0 + timedelta(hours=23))
    asyncio.run(_flush(service, clock))  # the background job, as every audit_flush_ms
    assert feed(store) == ["old@x.test", "newer@x.test"]  # both within the retention

    # A minute short of the newer note's retention: only the old one goes.
    clock.advance((timedelta(hours=23) + LICENSE_CHANGES_RETENTION).total_seconds() - 60)
    asyncio.run(_flush(service, clock))
    assert feed(store) == ["newer@x.test"]

    # Past the newer note's retention, but within ten minutes of the last prune.
    clock.advance(5 * 60)
    asyncio.run(_flush(service, clock))
    assert feed(store) == ["newer@x.test"]
    clock.advance(LICENSE_CHANGES_PRUNE_EVERY.total_seconds() - 5 * 60)
    asyncio.run(_flush(service, clock))
    assert feed(store) == []


def test_a_harness_clock_moved_days_ahead_prunes_nothing_real_time_has_not_aged(
    backend: Backend,
) -> None:
    """Time travel (--test-clock) moves the service's clock, not the replicas'
    50 ms of real time between two reads of the feed: the retention holds in
    both. Without it, a clock moved three days ahead pruned this unread row."""
    store = backend.store
    note(store, "fresh@x.test", T0)
    ahead = ManualClock(T0 + timedelta(days=3))
    asyncio.run(_flush(service_on(store), ahead, wall=ManualClock(T0 + timedelta(seconds=1))))
    assert feed(store) == ["fresh@x.test"]
    # A day of real time later too, it goes.
    asyncio.run(_flush(service_on(store), ahead, wall=ManualClock(T0 + timedelta(days=2))))
    assert feed(store) == []


def _holds(store: Store, view: CustomerView, *emails: str) -> None:
    """A worker that has been serving: the database vouched for these licenses."""
    with store.autocommit() as uow:
        for email in emails:
            found = uow.licenses.by_email(email)
            assert found is not None
            view.confirm(found)


def _add(store: Store, email: str, token: str) -> None:
    with store.transaction() as uow:
        uow.licenses.insert(NewCustomer(email, "Zed", token, "active"), T0)


def test_a_reader_the_pruning_passed_forgets_every_license(backend: Backend) -> None:
    _add(backend.store, "y@x.test", "POSPAL-YYYY-YYYY-YYYY-YYYY")
    _add(backend.store, "z@x.test", "POSPAL-ZZZZ-ZZZZ-ZZZZ-ZZZZ")
    view = CustomerView()
    other = backend.other(view)  # another worker process; its cursor at the end
    _holds(other, view, "y@x.test", "z@x.test")
    note(backend.store, "a@x.test", T0)
    with backend.store.transaction() as uow:  # pruned before the other read it
        assert uow.billing.prune_license_changes(T0 + timedelta(seconds=1)) == 1
    note(backend.store, "b@x.test", T0 + timedelta(seconds=2))
    with other.autocommit() as uow:
        uow.licenses.by_email("c@x.test")
    # Neither y@ nor z@ is in what was read (b@): but the change to a@ is gone
    # unread, and it might have been theirs, so nothing is answered from.
    assert view.last_known_good("y@x.test") is None
    assert view.last_known_good("z@x.test") is None
    if isinstance(other, PgStore):  # (SQLite's fresh rows go at any other commit anyway)
        assert view.fresh_rows() == 0
    # Past the pruned part, the feed is read change by change again.
    _holds(other, view, "y@x.test", "z@x.test")
    note(backend.store, "y@x.test", T0 + timedelta(seconds=3))
    with other.autocommit() as uow:
        uow.licenses.by_email("c@x.test")
    assert view.last_known_good("y@x.test") is None
    assert view.last_known_good("z@x.test") is not None
    other.close()


def test_a_process_started_after_a_prune_reads_on_from_there(backend: Backend) -> None:
    _add(backend.store, "z@x.test", "POSPAL-ZZZZ-ZZZZ-ZZZZ-ZZZZ")
    note(backend.store, "a@x.test", T0)
    with backend.store.transaction() as uow:
        assert uow.billing.prune_license_changes(T0 + timedelta(seconds=1)) == 1
    assert feed(backend.store) == []
    view = CustomerView()
    other = backend.other(view)
    _holds(other, view, "z@x.test")
    note(backend.store, "b@x.test", T0 + timedelta(seconds=2))
    with other.autocommit() as uow:
        uow.licenses.by_email("b@x.test")
    assert view.last_known_good("z@x.test") is not None  # no spurious "everything"
    other.close()
