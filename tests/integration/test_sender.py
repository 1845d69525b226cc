"""The fake Stripe's sender against a real service: retries, forgeries, pacing."""

from __future__ import annotations

import time

from fixtures.stripe.delivery import Delivery, DeliveryOptions, Forgery, plan
from fixtures.stripe.lifecycle import simulate
from fixtures.stripe.sender import Sender, SenderOptions
from licensing_service.contract import routes
from tests.conftest import TEST_WEBHOOK_SECRET
from tests.live import LiveServer


def sender(server: LiveServer, **options: object) -> Sender:
    opts = SenderOptions([TEST_WEBHOOK_SECRET], **options)  # type: ignore[arg-type]
    return Sender(server.url + routes.WEBHOOK, opts, clock=lambda: server.clock.now().timestamp())


def test_forgeries_are_refused_and_not_retried(server: LiveServer) -> None:
    event = simulate(1, 1, seed=21).events[0]
    forged = [Delivery(event, forgery=kind) for kind in Forgery]
    report = sender(server, retry_base_seconds=0.01).send([*forged, Delivery(event)])
    assert [a.status for a in report.attempts if a.forgery] == [400] * len(Forgery)
    assert len(report.attempts) == len(Forgery) + 1  # no retries of refused forgeries
    assert report.unexpected() == [] and report.gave_up == []


def test_a_failed_delivery_is_retried_until_accepted(server: LiveServer) -> None:
    events = simulate(2, 1, seed=22).events[:4]
    deliveries = [Delivery(e, fail_first=True) for e in events]
    report = sender(server, retry_base_seconds=0.01).send(deliveries)
    by_event: dict[str, list[int]] = {}
    for attempt in report.attempts:
        by_event.setdefault(attempt.event_id, []).append(attempt.status)
    assert all(statuses == [500, 200] for statuses in by_event.values()), by_event


def test_rate_bounds_the_sending_pace(server: LiveServer) -> None:
    stream = simulate(3, 2, seed=23)
    deliveries = plan(stream.events, DeliveryOptions(seed=1, duplicate_rate=0.0))[:21]
    started = time.monotonic()
    report = sender(server, rate=50.0, concurrency=8).send(deliveries)
    elapsed = time.monotonic() - started
    assert report.accepted() == 21
    # 21 requests at 50/s cannot all have left in under 0.4 s, however fast the service.
    assert elapsed >= 0.4 * 0.95
