"""Outbox delivery: Resend (faked with respx at the HTTP edge) and the local sink."""

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import respx

from licensing_service.adapters.clock import ManualClock
from licensing_service.adapters.email import ResendTransport, SinkTransport
from licensing_service.adapters.sqlite_migrations import migrate
from licensing_service.adapters.sqlite_store import SqliteStore
from licensing_service.domain.breaker import CircuitBreaker
from licensing_service.service.emails import EmailType, compose
from licensing_service.service.guard import StoreGuard
from licensing_service.service.outbox import Backoff, Deliverer

# Every test here runs on SQLite and on PostgreSQL (tests/conftest.py).
STORES = ("sqlite", "postgres")

T0 = datetime(2026, 6, 1, tzinfo=UTC)
API = "https://resend.test"


def guarded(store: SqliteStore) -> StoreGuard:
    return StoreGuard(store, CircuitBreaker())


def store_with_welcome(tmp_path: Path) -> SqliteStore:
    store = SqliteStore(tmp_path / "mail.db")
    migrate(store.connection(), T0)
    with store.transaction() as uow:
        queued = uow.outbox.enqueue(
            compose(
                EmailType.WELCOME,
                "till@example.test",
                None,
                dedupe_key="evt_1:welcome",
                name="Till",
                unlock_token="POSPAL-AAAA-BBBB-CCCC-DDDD",
            ),
            T0,
        )
        again = uow.outbox.enqueue(
            compose(EmailType.WELCOME, "till@example.test", None, dedupe_key="evt_1:welcome"), T0
        )
    assert queued and not again  # one email per cause
    return store


def row(store: SqliteStore) -> tuple[str, int, str | None, str | None]:
    with store.transaction() as uow:
        (email,) = uow.outbox.listing(10)
    return (
        email["delivery_status"],
        email["attempts"],
        email["next_attempt_at"],
        email["last_error"],
    )


def deliver(store: SqliteStore, transport: object, now: datetime) -> object:
    return asyncio.run(Deliverer(guarded(store), transport, Backoff()).run_once(now))  # type: ignore[arg-type]


def resend(client: httpx.AsyncClient) -> ResendTransport:
    return ResendTransport(client, "re_test_key_123456", "Licensing <l@example.test>")


def test_transient_failures_are_retried_with_backoff_then_delivered(tmp_path: Path) -> None:
    store = store_with_welcome(tmp_path)
    clock = ManualClock(T0)
    with respx.mock(base_url=API, assert_all_called=True) as mock:
        route = mock.post("/emails")
        route.side_effect = [
            httpx.Response(503),
            httpx.ConnectError("provider down"),
            httpx.Response(200, json={"id": "msg_123"}),
        ]

        async def run(now: datetime) -> object:
            async with httpx.AsyncClient(base_url=API) as client:
                return await Deliverer(guarded(store), resend(client)).run_once(now)

        asyncio.run(run(clock.now()))
        status, attempts, next_at, error = row(store)
        assert (status, attempts, error) == ("pending", 1, "provider answered 503")
        assert next_at == "2026-06-01 00:00:30.000000"
        asyncio.run(run(clock.advance(29)))  # not due yet: nothing sent
        assert route.call_count == 1
        asyncio.run(run(clock.advance(1)))
        assert row(store)[:2] == ("pending", 2)
        assert row(store)[2] == "2026-06-01 00:01:30.000000"  # 60 s after the 2nd failure
        asyncio.run(run(clock.advance(60)))
        assert row(store)[:2] == ("delivered", 3)
        sent = json.loads(route.calls.last.request.content)
        assert sent["to"] == ["till@example.test"]
        assert "POSPAL-AAAA-BBBB-CCCC-DDDD" in sent["text"]
        assert route.calls.last.request.headers["authorization"] == "Bearer re_test_key_123456"
        assert route.calls.last.request.headers["idempotency-key"] == "email-1"


def test_permanent_refusal_is_kept_as_failed_not_dropped(tmp_path: Path) -> None:
    store = store_with_welcome(tmp_path)
    with respx.mock(base_url=API) as mock:
        mock.post("/emails").respond(422, json={"message": "invalid to"})

        async def run() -> object:
            async with httpx.AsyncClient(base_url=API) as client:
                return await Deliverer(guarded(store), resend(client)).run_once(T0)

        asyncio.run(run())
    status, attempts, _, error = row(store)
    assert (status, attempts, error) == ("failed", 1, "provider refused: 422")


def test_backoff_grows_to_an_hour_and_stays() -> None:
    backoff = Backoff()
    delays = [backoff.after(n).total_seconds() for n in (1, 2, 3, 7, 8, 50)]
    assert delays == [30, 60, 120, 1920, 3600, 3600]


def test_sink_receives_the_email(tmp_path: Path) -> None:
    store = store_with_welcome(tmp_path)
    sink = tmp_path / "out" / "emails.jsonl"
    deliver(store, SinkTransport(sink), T0)
    (line,) = sink.read_text().splitlines()
    record = json.loads(line)
    assert record["type"] == "welcome" and record["subject"] == "Your POSPal license is ready"
    assert row(store)[0] == "delivered"


def test_unwritable_sink_keeps_the_email_pending(tmp_path: Path) -> None:
    store = store_with_welcome(tmp_path)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    deliver(store, SinkTransport(blocker / "emails.jsonl"), T0)
    status, attempts, next_at, _ = row(store)
    assert (status, attempts) == ("pending", 1)
    assert next_at is not None and next_at > "2026-06-01 00:00:00"
    assert timedelta(seconds=30) == Backoff().after(1)
