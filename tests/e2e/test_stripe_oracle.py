"""A simulated year of 500 customers, delivered the way Stripe delivers it,
against a real `serve` process: every license ends as the oracle says, and
every email is sent exactly once."""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fixtures.stripe.delivery import Delivery, DeliveryOptions, plan
from fixtures.stripe.lifecycle import SimulatedStream, simulate
from fixtures.stripe.sender import Sender, SenderOptions
from licensing_service.adapters.sqltime import to_db
from licensing_service.contract import routes
from tests.e2e.conftest import Served

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SECRET = "whsec_e2e_oracle"


def _sink_types(sink: Path) -> Counter[tuple[str, str]]:
    if not sink.exists():
        return Counter()
    lines = [json.loads(line) for line in sink.read_text().splitlines() if line.strip()]
    return Counter((line["to"], line["type"]) for line in lines)


def _expected_sink(stream: SimulatedStream) -> Counter[tuple[str, str]]:
    return Counter((email, kind) for email, exp in stream.oracle.items() for kind, _ in exp.emails)


def _wait_for_sink(sink: Path, expected: int, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds  # bounded: the deliverer drains every second
    while time.monotonic() < deadline:
        if sum(_sink_types(sink).values()) >= expected:
            time.sleep(1.5)  # one more drain: anything extra would show up now
            return
        time.sleep(0.2)


def test_a_shuffled_duplicated_year_of_500_customers_matches_the_oracle(
    serve: Callable[..., Served],
) -> None:
    stream = simulate(500, 12, seed=2026)
    deliveries = plan(
        stream.events,
        DeliveryOptions(seed=7, duplicate_rate=0.2, shuffle="full", fail_first_rate=0.05),
    )
    assert sum(d.duplicate for d in deliveries) > 0.15 * len(stream.events)
    assert sum(d.fail_first for d in deliveries) > 0.03 * len(stream.events)
    served = serve("--test-clock", extra_env={"STRIPE_WEBHOOK_SECRET": SECRET})
    sender = Sender(
        served.url + routes.WEBHOOK,
        SenderOptions([SECRET], concurrency=16, retry_base_seconds=0.05, deadline_seconds=300),
    )
    report = sender.send(deliveries)

    assert not report.timed_out and not report.gave_up
    statuses = Counter(a.status for a in report.attempts)
    failed_first = sum(1 for a in report.attempts if a.outcome == "WEBHOOK_HANDLER_FAILED")
    assert failed_first == len({d.event_id for d in deliveries if d.fail_first})
    assert set(statuses) == {200, 500}, statuses

    conn = sqlite3.connect(served.db)
    rows = {
        row[0]: row[1:]
        for row in conn.execute(
            "SELECT email, subscription_status, current_period_end, payment_failures,"
            " stripe_customer_id, stripe_session_id FROM customers"
        )
    }
    mismatches = []
    for email, want in stream.oracle.items():
        period_end = to_db(datetime.fromtimestamp(want.period_end, UTC))
        expected = (
            want.status,
            period_end,
            want.payment_failures,
            want.stripe_customer_id,
            want.checkout_session_id,
        )
        if rows.get(email) != expected:
            mismatches.append(f"{email}: {rows.get(email)} != {expected} ({want.story})")
    assert not mismatches, "\n".join(mismatches[:10])
    assert len(rows) == 500

    queued = Counter(
        (row[0], row[1]) for row in conn.execute("SELECT recipient, email_type FROM email_log")
    )
    assert queued == _expected_sink(stream)
    unique_events = {e["id"] for e in stream.events}
    completed = conn.execute(
        "SELECT COUNT(*) FROM webhook_events WHERE processing_status = 'completed'"
    ).fetchone()[0]
    assert completed == len(unique_events)
    conn.close()

    sink = served.db.with_name("emails.jsonl")
    expected = _expected_sink(stream)
    _wait_for_sink(sink, sum(expected.values()))
    assert _sink_types(sink) == expected  # each email delivered exactly once


def test_one_event_100_times_across_two_workers_applies_once(
    serve: Callable[..., Served],
) -> None:
    """The claim is a constraint in the database, so it holds across processes."""
    stream = simulate(1, 1, seed=5)
    served = serve("--workers", "2", extra_env={"STRIPE_WEBHOOK_SECRET": SECRET})
    checkout = next(e for e in stream.events if e["type"] == "checkout.session.completed")
    storm = [Delivery(checkout, duplicate=n > 0) for n in range(100)]
    options = SenderOptions([SECRET], concurrency=32, inject_failures=False)
    report = Sender(served.url + routes.WEBHOOK, options).send(storm)
    outcomes = Counter(a.outcome for a in report.attempts)
    assert outcomes == {"applied": 1, "duplicate": 99}, outcomes
    conn = sqlite3.connect(served.db)
    assert conn.execute("SELECT COUNT(*) FROM customers").fetchone()[0] == 1
    assert conn.execute("SELECT COUNT(*) FROM email_log").fetchone()[0] == 1
    conn.close()
