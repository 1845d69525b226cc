"""The storm's durability judges and Stripe's retry schedule, on planted inputs:
each lost or doubled thing is reported, and a sound database passes."""

from __future__ import annotations

import itertools
import random

import pytest

from fixtures.stripe.lifecycle import ExpectedLicense
from fixtures.stripe.retries import STRIPE_LIVE, RetrySchedule
from fixtures.stripe.sender import Attempt
from scenarios.storm_db import AuditRow, License, Stored
from scenarios.storm_judge import audit_problems, email_problems, judge

EMAIL = "ann@example.test"
ORACLE = {
    EMAIL: ExpectedLicense(
        email=EMAIL,
        stripe_customer_id="cus_1",
        checkout_session_id="cs_1",
        status="active",
        period_end=0,
        payment_failures=1,
        emails=(("welcome", "welcome:cs_1"), ("suspension", "suspension:in_1")),
        story=("signup", "payment failed x1", "recovered"),
    )
}
EVENTS = [{"id": f"evt_{n}", "type": "invoice.paid"} for n in range(3)]


def attempt(event: str, status: int = 200, outcome: str = "applied", n: int = 1) -> Attempt:
    return Attempt(0, event, "invoice.paid", n, status, 1.0, outcome, None, False)


def sound(**changes: object) -> Stored:
    values: dict[str, object] = {
        "completed": frozenset(e["id"] for e in EVENTS),
        "licenses": {EMAIL: License(7, EMAIL, "active")},
        "audit": [
            AuditRow(1, 7, "license_created", "checkout", None),
            AuditRow(2, 7, "status_change", "inactive", "evt_1"),
            AuditRow(3, 7, "status_change", "active", "evt_2"),
        ],
        "outbox": [
            {"recipient": EMAIL, "email_type": "welcome", "dedupe_key": "welcome:cs_1"},
            {"recipient": EMAIL, "email_type": "suspension", "dedupe_key": "suspension:in_1"},
        ],
    }
    values.update(changes)
    return Stored(**values)  # type: ignore[arg-type]


ANSWERS = [attempt("evt_0"), attempt("evt_1", 503, "SERVICE_UNAVAILABLE"), attempt("evt_1", n=2)]
ANSWERS += [attempt("evt_2"), attempt("evt_2", outcome="duplicate")]


def test_a_sound_run_passes():
    found = judge(ANSWERS, EVENTS, ORACLE, sound())
    assert found.all() == []
    assert found.acknowledged == 3


def test_an_acknowledged_event_missing_from_the_database_is_lost():
    found = judge(ANSWERS, EVENTS, ORACLE, sound(completed=frozenset({"evt_0", "evt_2"})))
    assert found.lost == ["evt_1: acknowledged 2xx but not completed in webhook_events"]
    assert any("not completed" in line for line in found.audit)  # its audit row is orphaned


def test_an_event_never_acknowledged_is_lost():
    found = judge(ANSWERS[:-2], EVENTS, ORACLE, sound())
    assert found.lost == ["evt_2: never acknowledged 2xx (given up, or the storm ended)"]


def test_an_answer_lost_to_a_crash_is_not_a_loss_when_the_database_has_the_event():
    answers = [*ANSWERS[:-2], attempt("evt_2", 0, "ServerDisconnectedError")]
    answers.append(attempt("evt_2", outcome="duplicate", n=2))
    found = judge(answers, EVENTS, ORACLE, sound())
    assert found.all() == []
    assert found.answer_lost_after_commit == 1
    # Without the database, the same answers cannot prove evt_2 was processed.
    assert judge(answers, EVENTS, ORACLE, None).lost == [
        "evt_2: answered duplicate, never processed"
    ]


def test_an_event_applied_twice_is_reported_from_answers_and_from_audit_rows():
    found = judge([*ANSWERS, attempt("evt_0", n=2)], EVENTS, ORACLE, sound())
    assert found.applied_twice == ["evt_0: answered as processed 2 times"]
    doubled = sound(audit=[*sound().audit, AuditRow(4, 7, "status_change", "active", "evt_2")])
    assert (
        "evt_2: 2 status_change audit rows" in judge(ANSWERS, EVENTS, ORACLE, doubled).applied_twice
    )


@pytest.mark.parametrize(
    ("audit", "status", "expected"),
    [
        ([AuditRow(2, 7, "status_change", "active", "evt_2")], "active", "0 license_created"),
        (
            [
                AuditRow(1, 7, "license_created", "checkout", None),
                AuditRow(9, 7, "license_created", "checkout", None),
            ],
            "active",
            "2 license_created",
        ),
        (
            [
                AuditRow(1, 7, "license_created", "checkout", None),
                AuditRow(3, 7, "status_change", "active", "evt_2"),
                AuditRow(4, 7, "status_change", "active", "evt_0"),
            ],
            "active",
            "repeats 'active'",
        ),
        (
            [
                AuditRow(1, 7, "license_created", "checkout", None),
                AuditRow(2, 7, "status_change", "inactive", "evt_1"),
            ],
            "active",
            "last status_change says 'inactive', the license is 'active'",
        ),
    ],
    ids=["creation-row-lost", "creation-row-doubled", "row-lost-between", "last-row-lost"],
)
def test_audit_rows_lost_or_doubled_are_reported(audit: list[AuditRow], status: str, expected: str):
    stored = sound(audit=audit, licenses={EMAIL: License(7, EMAIL, status)})
    problems = audit_problems(stored, ORACLE)
    assert any(expected in p for p in problems), problems


def test_a_license_missing_from_the_database_is_reported():
    assert audit_problems(sound(licenses={}), ORACLE) == [f"{EMAIL}: no license in the database"]


def test_emails_lost_or_doubled_are_reported():
    outbox = sound().outbox
    lost = email_problems(outbox[:1], ORACLE)
    assert "suspension to ann@example.test: 0 in the outbox, expected 1" in lost
    assert "suspension to ann@example.test (suspension:in_1): 0 rows, expected 1" in lost
    again = {"recipient": EMAIL, "email_type": "welcome", "dedupe_key": "welcome:again"}
    doubled = email_problems([*outbox, again], ORACLE)
    assert doubled == ["welcome to ann@example.test: 2 in the outbox, expected 1"]
    assert email_problems(outbox, ORACLE) == []


def test_stripes_schedule_backs_off_exponentially_for_three_days():
    offsets = STRIPE_LIVE.offsets()
    assert offsets[:4] == [0, 60, 180, 420]  # 1, 2, 4 minutes apart
    gaps = [b - a for a, b in itertools.pairwise(offsets)]
    assert max(gaps) == 6 * 3600  # capped
    assert offsets[-1] <= 3 * 86_400 < offsets[-1] + 6 * 3600
    assert STRIPE_LIVE.next_attempt_at(0, offsets[-1], len(offsets), None) is None
    rng = random.Random(3)
    for n in range(1, 12):
        base = STRIPE_LIVE.delay(n)
        assert base * 0.9 <= STRIPE_LIVE.delay(n, rng) <= base * 1.1
    with pytest.raises(ValueError, match="jitter"):
        RetrySchedule(jitter=1.0)
    with pytest.raises(ValueError, match="counted from 1"):
        STRIPE_LIVE.delay(0)
