"""The webhook group commit on the in-memory store: one transaction per batch,
a savepoint per event, every answer after the COMMIT. A planted batcher that
answers first (tests/scenarios/ack_early_batch_service.py) is caught."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from fixtures.stripe import objects
from licensing_service.adapters.memory import MemoryUnitOfWork
from licensing_service.contract import stripe as contract
from licensing_service.contract.faults import FaultsRequest, WebhookFault
from licensing_service.service.errors import (
    DatabaseUnavailable,
    LicensingError,
    StorageUnavailable,
    WebhookHandlerFailed,
    WebhookSignatureInvalid,
)
from licensing_service.service.faults import DbFaults, Faults
from licensing_service.service.webhook_batch import WebhookBatcher
from licensing_service.service.webhooks import WebhookResult
from tests.fakes import WEBHOOK_SECRET, Rig, rig
from tests.scenarios.ack_early_batch_service import AnswersBeforeCommit


def checkout(r: Rig, n: int) -> bytes:
    created = int(r.clock.now().timestamp())
    session = objects.checkout_session(
        id=f"cs_{n}",
        customer=f"cus_{n}",
        subscription=f"sub_{n}",
        email=f"buyer{n}@x.test",
        name=f"Buyer {n}",
        created=created,
    )
    event = objects.event(
        id=f"evt_{n}", type=contract.CHECKOUT_COMPLETED, created=created, data_object=session
    )
    return json.dumps(event).encode()


def signed(r: Rig, body: bytes, secret: str = WEBHOOK_SECRET) -> str:
    return contract.signature_header(body, secret, int(r.clock.now().timestamp()))


def deliver_together(
    r: Rig, batcher: WebhookBatcher, bodies: list[bytes], secret: str = WEBHOOK_SECRET
) -> list[WebhookResult | BaseException]:
    """Every body posted in the same turn of the loop (one batch)."""

    async def all_at_once() -> list[WebhookResult | BaseException]:
        calls = [batcher.receive(r.call(), b, signed(r, b, secret)) for b in bodies]
        return await asyncio.gather(*calls, return_exceptions=True)

    return asyncio.run(all_at_once())


def committed_commits(r: Rig) -> list[int]:
    """Count the write transactions the store commits (scopes it opens atomically)."""
    commits: list[int] = []
    opened = r.store.transaction

    @contextmanager
    def counting() -> Iterator[MemoryUnitOfWork]:
        with opened() as uow:
            yield uow
        commits.append(1)

    r.store.transaction = counting  # type: ignore[method-assign,assignment]
    return commits


def test_deliveries_of_one_turn_share_one_commit_and_duplicates_apply_once() -> None:
    r = rig()
    batcher = WebhookBatcher(r.webhooks)
    commits = committed_commits(r)
    bodies = [checkout(r, n) for n in range(5)]
    results = deliver_together(r, batcher, [*bodies, bodies[1], bodies[3]])
    assert len(commits) == 1 and batcher.batches == 1
    outcomes = [res.outcome for res in results if isinstance(res, WebhookResult)]
    assert outcomes == ["applied"] * 5 + ["duplicate"] * 2
    assert sorted(row.record.email for row in r.store.tables.customers.values()) == [
        f"buyer{n}@x.test" for n in range(5)
    ]
    assert sorted(e.email.email_type for e in r.store.tables.emails.values()) == ["welcome"] * 5


def test_a_batch_is_bounded_and_the_rest_follows_in_the_next_turn() -> None:
    r = rig()
    batcher = WebhookBatcher(r.webhooks, max_batch=2)
    results = deliver_together(r, batcher, [checkout(r, n) for n in range(5)])
    assert batcher.batches == 3
    assert all(isinstance(res, WebhookResult) and res.outcome == "applied" for res in results)


def test_one_failing_event_is_undone_alone_and_recorded_for_its_retry() -> None:
    r = rig()
    faults = Faults(DbFaults())
    faults.apply(FaultsRequest(webhook=WebhookFault(fail_once=["evt_2"])))
    r.webhooks.fail_hook = faults.check_webhook
    batcher = WebhookBatcher(r.webhooks)
    results = deliver_together(r, batcher, [checkout(r, n) for n in range(4)])
    assert isinstance(results[2], WebhookHandlerFailed)
    assert [res.outcome for res in results if isinstance(res, WebhookResult)] == ["applied"] * 3
    emails = {row.record.email for row in r.store.tables.customers.values()}
    assert emails == {"buyer0@x.test", "buyer1@x.test", "buyer3@x.test"}  # none of evt_2's
    assert r.store.tables.events["evt_2"].row.status == "failed"
    # Stripe's retry applies it (the fault fails it once).
    (retried,) = deliver_together(r, batcher, [checkout(r, 2)])
    assert isinstance(retried, WebhookResult) and retried.outcome == "applied"


def test_a_forgery_is_refused_at_once_and_does_not_join_the_batch() -> None:
    r = rig()
    batcher = WebhookBatcher(r.webhooks)
    good, forged = checkout(r, 1), checkout(r, 2)

    async def both() -> list[Any]:
        honest = batcher.receive(r.call(), good, signed(r, good))
        bad = batcher.receive(r.call(), forged, signed(r, forged, "whsec_wrong"))
        return list(await asyncio.gather(honest, bad, return_exceptions=True))

    honest, bad = asyncio.run(both())
    assert isinstance(honest, WebhookResult) and honest.outcome == "applied"
    assert isinstance(bad, WebhookSignatureInvalid)
    assert "evt_2" not in r.store.tables.events


def failing_commit(r: Rig) -> None:
    """The store's COMMIT fails (a full disk): the writes are rolled back."""
    opened = r.store.transaction

    @contextmanager
    def refused() -> Iterator[MemoryUnitOfWork]:
        scope = opened()
        uow = scope.__enter__()
        try:
            yield uow
        except BaseException as exc:
            scope.__exit__(type(exc), exc, exc.__traceback__)
            raise
        error = StorageUnavailable("disk I/O error (at COMMIT)")
        scope.__exit__(type(error), error, None)  # rolls the unit back
        raise error

    r.store.transaction = refused  # type: ignore[method-assign,assignment]


def answered_2xx_for_an_uncommitted_batch(batcher_type: type[WebhookBatcher]) -> list[str]:
    """The ids answered 200 although their batch's COMMIT failed (none may be)."""
    r = rig()
    failing_commit(r)
    batcher = batcher_type(r.webhooks)
    results = deliver_together(r, batcher, [checkout(r, n) for n in range(3)])
    assert not r.store.tables.events  # nothing was committed
    return [res.event_id for res in results if isinstance(res, WebhookResult)]


def test_when_the_commit_fails_every_delivery_of_the_batch_is_refused_retryably() -> None:
    assert answered_2xx_for_an_uncommitted_batch(WebhookBatcher) == []
    r = rig()
    failing_commit(r)
    results = deliver_together(r, WebhookBatcher(r.webhooks), [checkout(r, 0), checkout(r, 1)])
    assert all(isinstance(res, DatabaseUnavailable) for res in results)
    assert all(isinstance(res, LicensingError) and res.retry_after for res in results)


def test_the_check_catches_a_batcher_that_answers_before_its_commit() -> None:
    assert answered_2xx_for_an_uncommitted_batch(AnswersBeforeCommit) == ["evt_0", "evt_1", "evt_2"]


@pytest.mark.parametrize("size", [1, 3])
def test_a_bug_in_the_batch_answers_every_delivery_with_a_retryable_failure(size: int) -> None:
    r = rig()
    batcher = WebhookBatcher(r.webhooks)

    def broken(deliveries: object) -> list[Any]:
        raise RuntimeError("a bug")

    r.webhooks.receive_batch = broken  # type: ignore[method-assign]
    results = deliver_together(r, batcher, [checkout(r, n) for n in range(size)])
    assert all(isinstance(res, WebhookHandlerFailed) for res in results)
