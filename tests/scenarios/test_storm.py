"""The webhook retry storm: it passes against the reference service (a uvicorn
server in a thread, on a manual test clock), and its judges fail a service that
applies a duplicate twice or that answers 200 during the outage and drops the
event. The retries follow the schedule, on the test clock, in seconds of wall time."""

from __future__ import annotations

import itertools
import sqlite3
from collections import defaultdict
from collections.abc import Callable
from contextlib import closing
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from fixtures.stripe.retries import STRIPE_LIVE
from licensing_service.domain.webhook_claims import Claim, decide_claim
from licensing_service.service import webhooks
from licensing_service.service.errors import Unavailable
from licensing_service.service.licensing import Call
from licensing_service.service.webhooks import WebhookResult, WebhookService
from scenarios.storm import Sent, StormConfig, StormError, StormProgress, run_storm
from scenarios.storm_db import read_stored
from scenarios.storm_judge import judge
from tests.conftest import TEST_WEBHOOK_SECRET
from tests.live import LiveServer

MakeServer = Callable[..., LiveServer]
# Small but with every feature: ~300 events, ~30% duplicated, 2 minutes of outage.
SMALL = StormConfig(events=300, storm_seconds=300, concurrency=8)
DB_OUTAGE = replace(SMALL, outage="db")


def storm(server: LiveServer, config: StormConfig = SMALL, **kwargs: object):
    return run_storm(
        server.url,
        [TEST_WEBHOOK_SECRET],
        config,
        db=server.db_path,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("config", [SMALL, DB_OUTAGE], ids=["webhook-rejected", "db-errors"])
def test_the_reference_service_takes_every_event_once_through_two_minutes_of_5xx(
    make_server: MakeServer, config: StormConfig
):
    seen: list[StormProgress] = []
    result = storm(make_server(), config, progress=seen.append)
    assert result.passed, result.examples
    assert result.events >= 300 and result.deliveries > result.events  # duplicates
    assert result.acknowledged == result.events
    assert result.lost == result.applied_twice == result.state_mismatches == 0
    assert result.audit_problems == result.email_problems == 0
    assert result.outage_windows == [(pytest.approx(120.0), pytest.approx(240.0))]
    assert result.refused_in_outage > 0 and result.retried >= result.refused_in_outage
    # Two minutes of outage and the retries after it passed on the test clock,
    # in a few seconds of wall time.
    assert result.clock_seconds >= 240 and result.wall_seconds < 60
    assert seen and seen[-1].pending == 0 and seen[-1].acknowledged == result.deliveries
    clock = [p.clock_seconds for p in seen]
    assert clock == sorted(clock)


def gaps(timeline: list[Sent]) -> list[tuple[int, float]]:
    """(failed attempt number, clock seconds to the next attempt) for every retry."""
    by_delivery: dict[int, list[Sent]] = defaultdict(list)
    for sent in timeline:
        by_delivery[sent.index].append(sent)
    out = []
    for sends in by_delivery.values():
        sends.sort(key=lambda s: s.attempt)
        out += [(a.attempt, b.at - a.at) for a, b in itertools.pairwise(sends)]
    return out


def test_retries_follow_stripes_backoff_and_are_signed_afresh(make_server: MakeServer):
    # Ten minutes of outage: retries come up to ~15 minutes after the first
    # attempt, far past the 300 s signature tolerance, so a retry that reused
    # its first signature would be refused 400.
    config = StormConfig(events=120, storm_seconds=120, outage_start_seconds=30, outage_seconds=600)
    result = storm(make_server(), config)
    assert result.passed, result.examples
    assert not [a for a in result.attempts_log if a.status == 400]
    retries = gaps(result.timeline)
    assert max(attempt for attempt, _ in retries) >= 4
    assert max(gap for _, gap in retries) > 300
    jitter, tick = STRIPE_LIVE.jitter, config.tick_seconds
    for attempt, gap in retries:
        delay = STRIPE_LIVE.delay(attempt)
        assert delay * (1 - jitter) - tick <= gap <= delay * (1 + jitter) + tick
    # Every attempt of a delivery carries the same event id.
    ids = defaultdict(set)
    for a in result.attempts_log:
        ids[a.index].add(a.event_id)
    assert all(len(v) == 1 for v in ids.values())


def test_fails_a_service_that_applies_a_duplicate_twice(
    make_server: MakeServer, monkeypatch: pytest.MonkeyPatch
):
    def reprocess(
        status: str | None,
        lease_until: datetime | None,
        received_at: datetime | None,
        now: datetime,
        lease: timedelta,
    ) -> Claim:
        if status == "completed":
            return Claim.RETRY  # as if the claim were never looked at
        return decide_claim(status, lease_until, received_at, now, lease)

    monkeypatch.setattr(webhooks, "decide_claim", reprocess)
    result = storm(make_server())
    assert not result.passed
    assert result.applied_twice > 0
    assert any("answered as processed 2 times" in line for line in result.examples)


def test_fails_a_service_that_answers_200_in_the_outage_and_drops_the_event(
    make_server: MakeServer, monkeypatch: pytest.MonkeyPatch
):
    original = WebhookService.receive

    def swallowing(
        self: WebhookService, call: Call, body: bytes, signature: str | None
    ) -> WebhookResult:
        try:
            return original(self, call, body, signature)
        except Unavailable:  # POSPal's way: the error swallowed, the event "completed"
            header = self._verified_header(call, body, signature)
            return WebhookResult(header.id, header.type, "applied")

    monkeypatch.setattr(WebhookService, "receive", swallowing)
    result = storm(make_server(), DB_OUTAGE)
    assert not result.passed
    assert result.lost > 0 and result.state_mismatches > 0
    assert any("acknowledged 2xx but not completed" in line for line in result.examples)
    assert "the outage refused no delivery: the storm tested no retry" in result.examples


def test_refuses_a_target_without_a_test_clock_and_a_bad_config(make_server: MakeServer):
    server = make_server(test_clock=False)
    with pytest.raises(StormError, match="needs a service started with --test-clock"):
        run_storm(server.url, [TEST_WEBHOOK_SECRET], SMALL)
    with pytest.raises(StormError, match="events must be at least 1"):
        StormConfig(events=0)


def test_the_database_judges_find_rows_removed_or_doubled_after_a_real_storm(
    make_server: MakeServer,
):
    server = make_server()
    result = storm(server, replace(SMALL, outage_seconds=0))
    assert result.passed, result.examples
    db = server.db_path
    oracle, events = result.stream.oracle, result.stream.events

    def judged() -> list[str]:
        return judge(result.attempts_log, events, oracle, read_stored(db, oracle)).all()

    assert judged() == []
    with closing(sqlite3.connect(db)) as conn, conn:
        # One license's last status change, one email, and a doubled creation row.
        # The last of two or more: the trail then ends at another status.
        last = conn.execute(
            "SELECT max(id) FROM audit_log WHERE action = 'status_change' AND customer_id IN"
            " (SELECT customer_id FROM audit_log WHERE action = 'status_change'"
            "  GROUP BY customer_id HAVING count(*) >= 2)"
        ).fetchone()[0]
        assert last is not None
        conn.execute("DELETE FROM audit_log WHERE id = ?", (last,))
        conn.execute("DELETE FROM email_log WHERE id = (SELECT min(id) FROM email_log)")
        conn.execute(
            "INSERT INTO audit_log (customer_id, action, outcome, created_at)"
            " SELECT customer_id, action, outcome, created_at FROM audit_log"
            " WHERE action = 'license_created' LIMIT 1"
        )
        conn.execute("DELETE FROM webhook_events WHERE id = (SELECT min(id) FROM webhook_events)")
    problems = judged()
    assert any("acknowledged 2xx but not completed" in p for p in problems)
    assert any("2 license_created audit rows" in p for p in problems)
    assert any("last status_change says" in p for p in problems)
    assert any("0 in the outbox, expected 1" in p for p in problems)
