"""Each expectation passes on a good recording and fails on one that breaks it."""

from __future__ import annotations

from dataclasses import replace

import pytest

from loadtests.rehearsal_load import Answer
from scenarios.expectations import (
    EXPECTATION_KINDS,
    Outcome,
    Verdict,
    exit_code,
    expected_tier,
    judge_all,
)
from scenarios.recording import BreakerSample, ClockMove, FaultWindow, Recording
from tests.scenarios.planted import answer, db_outage, in_outage, iso, with_answers


def judge(kind: str, rec: Recording, **params: object) -> Verdict:
    model = EXPECTATION_KINDS[kind]
    return model.model_validate({"kind": kind, **params}).judge(rec)  # type: ignore[attr-defined]


GOOD_DB_OUTAGE = [
    ("breaker_opens", {}),
    ("half_open_trials", {}),
    ("breaker_closes", {}),
    ("answered_ratio", {"min": 0.999, "fault": "db"}),
    ("wrong_answers", {}),
    ("degraded_marked", {}),
    ("fail_fast", {"ops": ["session"], "fault": "db", "max_ms": 100}),
    ("latency_p99", {"max_ms": 50}),
    ("recovers", {"within_s": 2}),
]


@pytest.mark.parametrize(("kind", "params"), GOOD_DB_OUTAGE)
def test_a_good_outage_passes(kind: str, params: dict[str, object]) -> None:
    verdict = judge(kind, db_outage(), **params)
    assert verdict.outcome is Outcome.PASS, verdict


# ------------------------------------------------------------------ the breaker


def breaker(rec: Recording, change: object) -> Recording:
    return replace(rec, breaker=[change(s) for s in rec.breaker])  # type: ignore[operator]


def test_a_breaker_that_never_opens_fails() -> None:
    rec = breaker(db_outage(), lambda s: replace(s, state="CLOSED", failures=min(s.failures, 4)))
    verdict = judge("breaker_opens", rec)
    assert verdict.outcome is Outcome.FAIL
    assert verdict.observed == "never opened"


def test_a_breaker_opening_after_the_wrong_count_fails() -> None:
    rec = breaker(db_outage(), lambda s: replace(s, failures=3) if s.failures == 5 else s)
    assert judge("breaker_opens", rec).outcome is Outcome.FAIL
    # ... and the configured count can be given in the file instead.
    assert judge("breaker_opens", rec, failures=3).outcome is Outcome.PASS


def test_a_breaker_open_before_the_fault_fails() -> None:
    rec = db_outage()
    rec.breaker.insert(0, BreakerSample(0.0, "OPEN", 5, "degraded"))
    assert judge("breaker_opens", rec).outcome is Outcome.FAIL


def test_two_trials_in_one_open_period_fail() -> None:
    rec = breaker(db_outage(), lambda s: replace(s, failures=7) if s.failures == 6 else s)
    verdict = judge("half_open_trials", rec)
    assert verdict.outcome is Outcome.FAIL
    assert "2 trials" in verdict.observed


def test_leaving_open_before_the_open_period_fails() -> None:
    # The breaker closes at t=6.05 (the fault cleared) without the clock moving:
    # its service time is still before nextAttempt.
    rec = breaker(
        db_outage(),
        lambda s: replace(s, state="CLOSED", failures=0, next_attempt=None) if s.t >= 6.05 else s,
    )
    verdict = judge("half_open_trials", rec)
    assert verdict.outcome is Outcome.FAIL
    assert "before its open period ended" in verdict.observed


def test_a_read_winning_the_trial_may_close_with_the_count_kept() -> None:
    # db.errors failed writes too; a validation (a read) won the trial once the
    # database was back: CLOSED with the 6 failures kept until a write succeeds.
    closing = next(s.t for s in db_outage().breaker if s.state == "CLOSED" and s.t > 2.1)
    rec = breaker(db_outage(), lambda s: replace(s, failures=6) if s.t == closing else s)
    assert judge("half_open_trials", rec).outcome is Outcome.PASS
    assert judge("breaker_closes", rec).outcome is Outcome.PASS


def test_no_trial_at_all_cannot_be_judged() -> None:
    rec = breaker(db_outage(), lambda s: replace(s, state="OPEN", failures=5) if s.t >= 2.1 else s)
    assert judge("half_open_trials", rec).outcome is Outcome.ERROR
    assert judge("breaker_closes", rec).outcome is Outcome.FAIL


def test_a_half_open_sample_is_the_trial_in_flight() -> None:
    rec = db_outage()
    at = next(i for i, s in enumerate(rec.breaker) if s.t > 7.05)
    rec.breaker.insert(at, BreakerSample(7.06, "HALF_OPEN", 6, "degraded", iso(67.06)))
    assert judge("half_open_trials", rec).outcome is Outcome.PASS


# ------------------------------------------------------------------ answers


def test_a_suspended_license_answered_valid_is_a_wrong_answer() -> None:
    # What a snapshot that answers a suspended license from stale data does.
    def stale(a: Answer) -> Answer:
        if a.op == "suspended" and in_outage(a.t):
            return replace(a, status=200, code=None, valid=True, degraded=True)
        return a

    verdict = judge("wrong_answers", with_answers(db_outage(), stale))
    assert verdict.outcome is Outcome.FAIL
    assert "a suspended license answered valid (degraded)" in verdict.detail


def test_an_active_license_refused_when_not_degraded_is_wrong() -> None:
    rec = db_outage()
    rec.answers.append(answer(9.5, status=403, code="SUBSCRIPTION_INACTIVE", valid=None))
    assert judge("wrong_answers", rec).outcome is Outcome.FAIL
    # A tolerance in the file lets one through (it must be said out loud).
    assert judge("wrong_answers", rec, max=1).outcome is Outcome.PASS


def test_unanswered_validations_lower_the_ratio() -> None:
    def lost(a: Answer) -> Answer:
        if a.op == "validate" and in_outage(a.t) and int(a.t * 10) % 2:
            return replace(a, status=503, code="DATABASE_ERROR", valid=None)
        return a

    verdict = judge("answered_ratio", with_answers(db_outage(), lost), min=0.999)
    assert verdict.outcome is Outcome.FAIL
    assert "503" in verdict.detail


def test_licenses_never_seen_before_the_fault_are_not_counted() -> None:
    rec = db_outage()
    rec.answers.append(answer(3.0, license="new@x.test", status=503, valid=None))
    assert judge("answered_ratio", rec, min=1.0).outcome is Outcome.PASS


def test_undegraded_answers_during_the_outage_fail() -> None:
    def unmarked(a: Answer) -> Answer:
        return replace(a, degraded=False) if a.op == "validate" and a.t == 3.0 else a

    assert judge("degraded_marked", with_answers(db_outage(), unmarked)).outcome is Outcome.FAIL


def test_a_grace_after_the_fault_began_spares_answers_from_a_fresh_cache() -> None:
    # db.errors 2..6 s: one unmarked answer at 2.0 (a cache still fresh), one at 3.0.
    def unmarked(a: Answer) -> Answer:
        return replace(a, degraded=False) if a.op == "validate" and a.t in (2.0, 3.0) else a

    rec = with_answers(db_outage(), unmarked)
    assert judge("degraded_marked", rec, grace_s=0.2).outcome is Outcome.FAIL  # 3.0 still
    early = with_answers(db_outage(), lambda a: unmarked(a) if a.t == 2.0 else a)
    assert judge("degraded_marked", early).outcome is Outcome.FAIL
    assert judge("degraded_marked", early, grace_s=0.2).outcome is Outcome.PASS


def test_writes_must_fail_fast_with_retry_after() -> None:
    rec = db_outage()
    slow = with_answers(rec, lambda a: replace(a, latency_ms=800) if a.op == "session" else a)
    assert judge("fail_fast", slow, max_ms=100).outcome is Outcome.FAIL
    bare = with_answers(rec, lambda a: replace(a, retry_after=None) if a.op == "session" else a)
    verdict = judge("fail_fast", bare)
    assert verdict.outcome is Outcome.FAIL
    assert "without Retry-After" in verdict.detail
    ok_write = with_answers(rec, lambda a: replace(a, status=200) if a.op == "session" else a)
    assert judge("fail_fast", ok_write).outcome is Outcome.FAIL


def test_nothing_sent_during_the_fault_is_no_pass() -> None:
    rec = replace(db_outage(), faults=[FaultWindow(20.0, 21.0, ("db.errors",))], end=22.0)
    assert judge("fail_fast", rec).outcome is Outcome.ERROR
    assert judge("answered_ratio", rec, min=0.5).outcome is Outcome.ERROR


def test_p99_during_the_fault() -> None:
    def slow(a: Answer) -> Answer:
        return replace(a, latency_ms=900) if in_outage(a.t) and a.t * 100 % 7 < 1 else a

    verdict = judge("latency_p99", with_answers(db_outage(), slow), max_ms=50)
    assert verdict.outcome is Outcome.FAIL


# ------------------------------------------------------------------ other faults


def stripe_outage(broken: bool = False) -> Recording:
    answers = []
    for n in range(60):
        t = n * 0.1
        inside = 2.0 <= t <= 4.0
        answers.append(answer(t, degraded=broken and inside))
        answers.append(answer(t, "webhook"))
        status, code = (503, "STRIPE_UNAVAILABLE") if inside else (200, None)
        answers.append(
            answer(t, "checkout", status=status, code=code, retry_after="5" if inside else None)
        )
    return Recording(answers=answers, faults=[FaultWindow(2.0, 4.0, ("stripe.errors",))], end=6.0)


def test_stripe_outage_checkout_fails_fast_validation_unaffected() -> None:
    rec = stripe_outage()
    assert judge("unaffected", rec, fault="stripe").outcome is Outcome.PASS
    ff = judge("fail_fast", rec, ops=["checkout"], fault="stripe", codes=["STRIPE_UNAVAILABLE"])
    assert ff.outcome is Outcome.PASS


def test_stripe_outage_that_degrades_validation_fails() -> None:
    verdict = judge("unaffected", stripe_outage(broken=True), fault="stripe")
    assert verdict.outcome is Outcome.FAIL


def test_checkout_hanging_instead_of_503_fails() -> None:
    hung = with_answers(
        stripe_outage(),
        lambda a: (
            replace(a, status=None, failure="timeout", code=None)
            if a.op == "checkout" and a.retry_after
            else a
        ),
    )
    assert judge("fail_fast", hung, ops=["checkout"], fault="stripe").outcome is Outcome.FAIL


def test_client_failures_only_inside_the_fault() -> None:
    rec = db_outage()
    rec.answers.append(answer(3.0, status=None, failure="timeout", valid=None))
    assert judge("client_failures", rec).outcome is Outcome.PASS
    rec.answers.append(answer(9.0, status=None, failure="timeout", valid=None))
    assert judge("client_failures", rec).outcome is Outcome.FAIL


def test_a_service_that_does_not_recover_fails() -> None:
    def stuck(a: Answer) -> Answer:
        return replace(a, degraded=True) if a.t > 6 and a.op == "validate" else a

    assert judge("recovers", with_answers(db_outage(), stuck), within_s=2).outcome is Outcome.FAIL


def test_server_errors() -> None:
    rec = db_outage()
    assert judge("server_errors", rec, ops=["validate"]).outcome is Outcome.PASS
    assert judge("server_errors", rec).outcome is Outcome.FAIL  # the fail-fast 503s count


# ------------------------------------------------------------------ clock jumps


def clock_jump(revived: bool = False, stale_tier: bool = False) -> Recording:
    jump = 7200.0
    answers = []
    for n in range(40):
        t = n * 0.1
        after = t >= 2.0
        offset = jump if after else 0.0
        first_after = 2.0 <= t < 2.1
        tier = 1800 if first_after and not stale_tier else 3600
        answers.append(answer(t, server_time=iso(t, offset), tier_s=tier))
        if first_after:
            status, code = (200, None) if revived else (404, "SESSION_EXPIRED")
            answers.append(
                answer(t + 0.02, "session", action="heartbeat", status=status, code=code)
            )
        elif 2.1 <= t < 2.2:
            answers.append(answer(t + 0.02, "session", action="start"))
        else:
            answers.append(answer(t + 0.02, "session", action="heartbeat"))
    return Recording(answers=answers, clock_moves=[ClockMove(1.95, jump)], end=4.0)


def test_a_clock_jump_expires_sessions_and_recomputes_tiers() -> None:
    rec = clock_jump()
    assert judge("sessions_expired", rec).outcome is Outcome.PASS
    assert judge("tiers_recomputed", rec).outcome is Outcome.PASS


def test_a_revived_session_fails() -> None:
    verdict = judge("sessions_expired", clock_jump(revived=True))
    assert verdict.outcome is Outcome.FAIL
    assert "revived" in verdict.detail


def test_a_tier_kept_across_the_jump_fails() -> None:
    verdict = judge("tiers_recomputed", clock_jump(stale_tier=True))
    assert verdict.outcome is Outcome.FAIL
    assert "3600s after a 7200s gap" in verdict.observed


@pytest.mark.parametrize(
    ("gap", "tier"), [(0, 3600), (3599.9, 3600), (3600, 1800), (86399, 1800), (86400, 900)]
)
def test_expected_tiers_match_the_readme(gap: float, tier: int) -> None:
    assert expected_tier(gap) == tier


# ------------------------------------------------------------------ the outbox


def outbox(lost: bool = False, doubled: bool = False, stuck: bool = False) -> Recording:
    from scenarios.recording import OutboxSample

    samples = [OutboxSample(0.5, 0, 3, 3, 3, 3)]
    samples += [OutboxSample(1 + n * 0.5, n + 1, 3, 4 + n, 3, 3) for n in range(4)]
    total = 6 if lost else 7
    delivered = total - (1 if stuck else 0)
    sent = delivered + (1 if doubled else 0)
    samples.append(OutboxSample(4.0, total - delivered, delivered, total, sent, delivered))
    return Recording(outbox=samples, faults=[FaultWindow(1.0, 3.0, ("email.errors",))], end=4.0)


def test_the_outbox_grows_then_drains_once() -> None:
    assert judge("outbox_drains", outbox()).outcome is Outcome.PASS
    assert judge("outbox_drains", outbox(lost=True)).outcome is Outcome.FAIL
    assert judge("outbox_drains", outbox(doubled=True)).outcome is Outcome.FAIL
    assert judge("outbox_drains", outbox(stuck=True)).outcome is Outcome.FAIL


# ------------------------------------------------------------------ the verdicts


def test_a_judge_that_raises_is_an_error_never_a_pass() -> None:
    class Broken:
        name = "broken"

        def judge(self, rec: Recording) -> Verdict:
            raise ZeroDivisionError

    (verdict,) = judge_all([Broken()], Recording())
    assert verdict.outcome is Outcome.ERROR


def test_exit_codes_like_the_gate() -> None:
    ok = Verdict("a", Outcome.PASS, "", "")
    bad = Verdict("b", Outcome.FAIL, "", "")
    unknown = Verdict("c", Outcome.ERROR, "", "")
    assert exit_code([ok]) == 0
    assert exit_code([ok, bad, unknown]) == 1
    assert exit_code([ok, unknown]) == 2
    assert exit_code([]) == 2


def test_a_recording_survives_its_file(tmp_path: object) -> None:
    from pathlib import Path

    rec = db_outage()
    path = Path(str(tmp_path)) / "r.json"
    rec.save(path)
    again = Recording.load(path)
    assert again == rec
    assert judge("breaker_opens", again).outcome is Outcome.PASS


# ------------------------------------------------------------------ storms


def storm(**changes: object) -> Recording:
    summary: dict[str, object] = {
        "events": 600,
        "deliveries": 800,
        "attempts": 900,
        "acknowledged": 600,
        "retried": 100,
        "lost": 0,
        "applied_twice": 0,
        "state_mismatches": 0,
        "audit_problems": 0,
        "email_problems": 0,
        "refused_in_outage": 100,
        "kills": 0,
        "examples": [],
        "kills_asked": 0,
        "outage_asked": True,
    }
    summary.update(changes)
    return Recording(storms=[summary])


def test_a_clean_storm_passes() -> None:
    assert judge("storm_exactly_once", storm(), min_events=500).outcome is Outcome.PASS


@pytest.mark.parametrize(
    "broken",
    [
        {"lost": 1, "examples": ["evt_1 acknowledged, not completed"]},
        {"applied_twice": 2, "examples": ["evt_2 applied twice"]},
        {"state_mismatches": 1},
        {"email_problems": 1},
        {"kills_asked": 3, "kills": 1},  # the crash did not happen as asked
        {"refused_in_outage": 0},  # the outage did not happen
        {"events": 10},
    ],
)
def test_a_storm_that_broke_a_promise_fails(broken: dict[str, object]) -> None:
    verdict = judge("storm_exactly_once", storm(**broken), min_events=500)
    assert verdict.outcome is Outcome.FAIL, verdict


def test_no_storm_cannot_be_judged() -> None:
    assert judge("storm_exactly_once", Recording()).outcome is Outcome.ERROR


def test_a_new_session_refused_after_the_jump_fails() -> None:
    rec = clock_jump()
    refused = with_answers(
        rec,
        lambda a: replace(a, status=409, code="SESSION_CONFLICT") if a.action == "start" else a,
    )
    verdict = judge("sessions_expired", refused)
    assert verdict.outcome is Outcome.FAIL
    assert "409 SESSION_CONFLICT" in verdict.observed


# ------------------------------------------------------------------ replicas


def replica_killed(**params: object) -> Recording:
    """Replica 2 of 3 killed at t=5 in a storm; the load answered before and after."""
    answers = [answer(t / 10) for t in range(0, 120)]
    rec = storm(kills=1, kills_asked=1, unanswered=40, outage_asked=False)
    values: dict[str, object] = {
        "replicas": 3,
        "replica_kills": [{"t": 5.0, "replica": 2}],
        "fresh_after_kill": [200, 200, 200],
        "front_refused": [0, 0, 3],
        "front_spread": [40, 40, 20],
    }
    values.update(params)
    return replace(rec, answers=answers, params=values, end=12.0)


def test_a_replica_killed_with_the_others_going_on_passes() -> None:
    verdict = judge("replica_failover", replica_killed(), within_s=2)
    assert verdict.outcome is Outcome.PASS, verdict
    assert "refused per replica [0, 0, 3]" in verdict.observed


def test_failures_near_the_kill_are_allowed_and_after_it_are_not() -> None:
    rec = replica_killed()
    near = with_answers(rec, lambda a: replace(a, status=0, failure="reset") if a.t == 5.5 else a)
    assert judge("replica_failover", near, within_s=2).outcome is Outcome.PASS
    late = with_answers(rec, lambda a: replace(a, status=503) if a.t == 9.0 else a)
    verdict = judge("replica_failover", late, within_s=2)
    assert verdict.outcome is Outcome.FAIL and "answers failed after the kill" in verdict.detail


@pytest.mark.parametrize(
    ("params", "storm_changes", "found"),
    [
        ({"front_refused": [0, 0, 0]}, {}, "never found replica 2 dead"),
        ({"fresh_after_kill": [200, 0, 200]}, {}, "fresh clients after the kill answered"),
        ({}, {"unanswered": 0}, "none reached the dead replica"),
        ({}, {"lost": 3}, "3 lost"),
        ({}, {"applied_twice": 1}, "1 applied twice"),
    ],
)
def test_a_replica_kill_that_broke_a_promise_fails(
    params: dict[str, object], storm_changes: dict[str, object], found: str
) -> None:
    rec = replica_killed(**params)
    rec.storms[0].update(storm_changes)
    verdict = judge("replica_failover", rec, within_s=2)
    assert verdict.outcome is Outcome.FAIL and found in verdict.detail, verdict


def test_no_replica_killed_cannot_be_judged() -> None:
    assert judge("replica_failover", replica_killed(replica_kills=[])).outcome is Outcome.ERROR


def sessions(*doubled: int) -> Recording:
    samples = [{"t": n * 0.5, "alive": 6, "doubled": d} for n, d in enumerate(doubled)]
    return Recording(sessions=samples)


def test_one_session_per_license() -> None:
    assert judge("one_session_per_license", sessions(0, 0, 0)).outcome is Outcome.PASS
    verdict = judge("one_session_per_license", sessions(0, 2, 0))
    assert verdict.outcome is Outcome.FAIL and "2 licenses with two or more at 0.50s" in (
        verdict.detail
    )
    assert judge("one_session_per_license", Recording()).outcome is Outcome.ERROR
    idle = Recording(sessions=[{"t": 0.0, "alive": 0, "doubled": 0}])
    assert judge("one_session_per_license", idle).outcome is Outcome.ERROR
