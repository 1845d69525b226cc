"""Expectations: what a licensing service must keep true through an outage, each
judged on a :class:`~scenarios.recording.Recording` alone (pure: no I/O, no clock).

Each kind is a small typed table (``[[expect]] kind = "..."`` plus its keys) with
``judge(recording) -> Verdict``. A verdict is PASS, FAIL, or ERROR when the
recording holds nothing to judge (a rehearsal that passes on no data is worthless).

Kinds:

- ``breaker_opens``: the breaker opened during a database fault after exactly
  ``failures`` consecutive failures (default: the service's configured threshold).
- ``half_open_trials``: every time the breaker left OPEN it was after its open
  period and let exactly one trial through (failures +1 and OPEN again while the
  database still fails; CLOSED when it is back).
- ``breaker_closes``: the breaker ends CLOSED after its last opening.
- ``answered_ratio``: of the validations of licenses seen before the first fault,
  sent during a fault, at least ``min`` got an answer (not a 5xx, not nothing).
- ``wrong_answers``: at most ``max`` (default 0): a suspended license answered
  valid, ever; an active one answered invalid when the answer was not degraded.
- ``degraded_marked``: validations answered while the database was out say
  ``degraded: true`` (from ``grace_s`` after the fault began).
- ``fail_fast``: ``ops`` sent during the ``fault`` windows answered ``status``
  (503) with ``Retry-After`` (and one of ``codes``), within ``max_ms``.
- ``unaffected``: ``ops`` sent during the ``fault`` windows answered as without
  it: validations right and not degraded, webhooks 200.
- ``latency_p99``: p99 of ``ops`` during the ``fault`` windows (or the whole run)
  at most ``max_ms``; requests that timed out count at their timeout.
- ``server_errors``: at most ``max`` 5xx answers (``during`` fault or run).
- ``client_failures``: timeouts and refused connections only inside the ``fault``
  windows (clients see timeouts, never a wrong answer: see ``wrong_answers``).
- ``recovers``: within ``within_s`` of the last fault ending, an active license
  was answered valid, not degraded, and every answer after that was too.
- ``sessions_expired``: after a clock jump of at least the session TTL, a session
  last seen before it is answered 404 ``SESSION_EXPIRED`` (never revived), and
  its device gets a new one.
- ``tiers_recomputed``: after a clock jump, each license's first validation has
  the cache tier its real gap since the previous one gives.
- ``outbox_drains``: the outbox grew while the email provider was down, then
  drained to nothing queued, each email once (no dedupe key twice).
- ``storm_exactly_once``: see :class:`StormExactlyOnce`.
- ``replica_failover``: a replica killed mid-storm, the others went on: the
  deliveries sent to the dead one went unanswered and were retried on the
  survivors (0 lost, 0 applied twice), the address in front found it dead
  (refused connections counted for it), fresh clients after the kill were all
  answered, and the load saw no failure and no 5xx from ``within_s`` after it.
- ``one_session_per_license``: sampled from the database through the run
  (PostgreSQL), never more than one active session for a license, and some
  license had one (else nothing was judged).
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

from loadtests.rehearsal_load import OPERATIONS, Answer
from scenarios.recording import Recording, Transition, parse_time, percentile, transitions

SESSION_TTL_S = 120
EXAMPLES = 3  # wrong answers shown in a verdict's detail


class Outcome(StrEnum):
    PASS = "pass"  # noqa: S105 - an outcome, not a password
    FAIL = "fail"
    ERROR = "error"  # nothing to judge, or the judge could not
    SKIP = "skip"


@dataclass(frozen=True, slots=True)
class Verdict:
    name: str
    outcome: Outcome
    expected: str
    observed: str
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "outcome": self.outcome.value,
            "expected": self.expected,
            "observed": self.observed,
            "detail": self.detail,
        }


Op = Literal["validate", "suspended", "session", "webhook", "signup", "checkout", "portal"]
assert set(Op.__args__) == set(OPERATIONS)  # type: ignore[attr-defined]
Fraction = Annotated[StrictFloat | StrictInt, Field(ge=0, le=1)]
Millis = Annotated[StrictFloat | StrictInt, Field(gt=0, le=600_000)]
FaultPrefix = Annotated[StrictStr, Field(min_length=1)]  # "db", "stripe", "proxy", "db.latency_ms"


class _Expectation(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)  # strict per field
    requires: ClassVar[frozenset[str]] = frozenset()

    def needs(self) -> frozenset[str]:
        return self.requires

    @property
    def name(self) -> str:
        return str(getattr(self, "kind", type(self).__name__))

    def judge(self, rec: Recording) -> Verdict:
        raise NotImplementedError

    def _v(self, outcome: Outcome, expected: str, observed: str, detail: str = "") -> Verdict:
        return Verdict(self.name, outcome, expected, observed, detail)


# --------------------------------------------------------------------------- breaker


class BreakerOpens(_Expectation):
    kind: Literal["breaker_opens"]
    failures: Annotated[StrictInt, Field(ge=1)] | None = None
    requires: ClassVar[frozenset[str]] = frozenset({"faults"})

    def judge(self, rec: Recording) -> Verdict:
        n = self.failures if self.failures is not None else rec.params.get("breaker_threshold")
        if not isinstance(n, int):
            return self._v(Outcome.ERROR, "opens", "?", "the breaker's threshold is unknown")
        expected = f"OPEN after exactly {n} consecutive failures"
        start = rec.first_fault_start("db")
        if start is None:
            return self._v(Outcome.ERROR, expected, "no database fault", "nothing to judge")
        early = [s for s in rec.breaker if s.t < start and s.state == "OPEN"]
        if early:
            return self._v(
                Outcome.FAIL, expected, f"OPEN at {early[0].t:.2f}s", "before any database fault"
            )
        opened = next((s for s in rec.breaker if s.t >= start and s.state == "OPEN"), None)
        if opened is None:
            last = rec.breaker[-1] if rec.breaker else None
            seen = f"{last.state}, {last.failures} failures" if last else "no /health sample"
            return self._v(
                Outcome.FAIL, expected, "never opened", f"during the database fault; last: {seen}"
            )
        observed = f"OPEN at {opened.t:.2f}s after {opened.failures} failures"
        outcome = Outcome.PASS if opened.failures == n else Outcome.FAIL
        return self._v(outcome, expected, observed, f"{opened.t - start:.2f}s into the fault")


class HalfOpenTrials(_Expectation):
    kind: Literal["half_open_trials"]
    requires: ClassVar[frozenset[str]] = frozenset({"faults", "test_clock"})

    def judge(self, rec: Recording) -> Verdict:
        expected = "after each open period one trial: OPEN again +1 failure, or CLOSED"
        # A HALF_OPEN sample is the trial in flight, caught by the poller: judged at its end.
        settled = [s for s in rec.breaker if s.state in ("OPEN", "CLOSED")]
        trs = transitions(settled)
        exits = 0
        for before, after in itertools.pairwise(trs):
            if before.state != "OPEN":
                continue
            exits += 1
            problem = _trial_problem(rec, before, after)
            if problem:
                return self._v(Outcome.FAIL, expected, problem, f"at {after.t:.2f}s")
        if exits == 0:
            return self._v(Outcome.ERROR, expected, "the breaker never left OPEN", "no trial")
        return self._v(Outcome.PASS, expected, f"{exits} trial(s), each one alone")


def _trial_problem(rec: Recording, before: Transition, after: Transition) -> str | None:
    """What is wrong with the breaker leaving OPEN (``before``) for ``after``."""
    opened = next(s for s in rec.breaker if s.t >= before.t and s.state == "OPEN")
    due, at = parse_time(opened.next_attempt), parse_time(after.server_time)
    if due is not None and at is not None and at < due:
        return f"left OPEN at {at.isoformat()}, before its open period ended ({due.isoformat()})"
    if after.state == "OPEN":
        trials = after.failures - before.failures
        return None if trials == 1 else f"{trials} trials went through one open period"
    if after.state == "CLOSED":
        # The count may be kept: when a read wins the trial while writes were
        # failing, the service closes but keeps it, so that the next failed
        # write reopens at once (domain/breaker.py); a successful write resets it.
        return None
    return f"went to {after.state}"


class BreakerCloses(_Expectation):
    kind: Literal["breaker_closes"]
    requires: ClassVar[frozenset[str]] = frozenset({"faults"})

    def judge(self, rec: Recording) -> Verdict:
        expected = "CLOSED again after the last opening"
        opened = [s for s in rec.breaker if s.state == "OPEN"]
        if not opened:
            return self._v(Outcome.ERROR, expected, "never opened", "nothing to judge")
        last_open = opened[-1].t
        closed = next((s for s in rec.breaker if s.t > last_open and s.state == "CLOSED"), None)
        final = rec.breaker[-1]
        if closed is None or final.state != "CLOSED":
            return self._v(
                Outcome.FAIL, expected, f"ends {final.state}", f"{final.failures} failures"
            )
        return self._v(Outcome.PASS, expected, f"CLOSED at {closed.t:.2f}s")


# --------------------------------------------------------------------------- answers


def _validations(rec: Recording) -> list[Answer]:
    return [a for a in rec.answers if a.op in ("validate", "suspended")]


def _seen_before(rec: Recording, prefix: str | None) -> set[str]:
    start = rec.first_fault_start(prefix)
    limit = start if start is not None else rec.end
    return {a.license for a in _validations(rec) if a.t < limit and a.answered and not a.degraded}


class AnsweredRatio(_Expectation):
    kind: Literal["answered_ratio"]
    min: Fraction
    fault: FaultPrefix | None = None  # None: any fault

    def judge(self, rec: Recording) -> Verdict:
        expected = f">= {self.min:.4g} of validations of licenses seen before, during the fault"
        seen = _seen_before(rec, self.fault)
        during = [
            a for a in _validations(rec) if a.license in seen and rec.within_fault(a, self.fault)
        ]
        if not during:
            return self._v(Outcome.ERROR, expected, "no such validation", "nothing to judge")
        answered = sum(1 for a in during if a.answered)
        ratio = answered / len(during)
        outcome = Outcome.PASS if ratio >= self.min else Outcome.FAIL
        lost = _counts(a.failure or str(a.status) for a in during if not a.answered)
        return self._v(outcome, expected, f"{ratio:.4%} ({answered}/{len(during)})", lost)


def is_wrong(a: Answer) -> str | None:
    """Why this answer is wrong, or None. Suspended: never valid, not even from
    the snapshot. Active: never refused (401/403, or valid false) unless degraded."""
    if a.expected == "suspended" and a.valid is True:
        return "a suspended license answered valid" + (" (degraded)" if a.degraded else "")
    refused = a.status in (401, 403) or (a.status == 200 and a.valid is False)
    if a.expected == "active" and not a.degraded and refused:
        return f"an active license answered {a.status} {a.code or 'valid=false'}"
    return None


class WrongAnswers(_Expectation):
    kind: Literal["wrong_answers"]
    max: Annotated[StrictInt, Field(ge=0)] = 0

    def judge(self, rec: Recording) -> Verdict:
        expected = f"<= {self.max} wrong answers"
        validations = _validations(rec)
        if not validations:
            return self._v(Outcome.ERROR, expected, "no validation recorded", "nothing to judge")
        wrong = [(a, why) for a in validations if (why := is_wrong(a))]
        outcome = Outcome.PASS if len(wrong) <= self.max else Outcome.FAIL
        detail = "; ".join(f"{why} at {a.t:.2f}s ({a.license})" for a, why in wrong[:EXAMPLES])
        suspended = sum(1 for a in validations if a.expected == "suspended")
        observed = f"{len(wrong)} of {len(validations)} ({suspended} of suspended licenses)"
        return self._v(outcome, expected, observed, detail)


class DegradedMarked(_Expectation):
    kind: Literal["degraded_marked"]
    fault: FaultPrefix = "db"
    # Validations sent within this long of a fault's start are not judged: a
    # database really gone (not a fault the service injects in itself) is not
    # seen by a validation its cache answers, fresh within its bound (50 ms).
    grace_s: Annotated[StrictFloat | StrictInt, Field(ge=0, le=10)] = 0
    requires: ClassVar[frozenset[str]] = frozenset({"faults"})

    def judge(self, rec: Recording) -> Verdict:
        expected = "validations answered during the database fault say degraded: true"
        if self.grace_s:
            expected += f" (from {self.grace_s:g}s after it began)"
        starts = [w.start for w in rec.fault_windows(self.fault)]
        during = [
            a
            for a in _validations(rec)
            if a.status == 200
            and rec.within_fault(a, self.fault)
            and not any(start <= a.t < start + self.grace_s for start in starts)
        ]
        if not during:
            return self._v(Outcome.ERROR, expected, "no 200 during the fault", "nothing to judge")
        unmarked = [a for a in during if a.degraded is not True]
        outcome = Outcome.PASS if not unmarked else Outcome.FAIL
        return self._v(outcome, expected, f"{len(during) - len(unmarked)}/{len(during)} marked")


class FailFast(_Expectation):
    kind: Literal["fail_fast"]
    ops: tuple[Op, ...] = ("session",)
    fault: FaultPrefix = "db"
    status: Annotated[StrictInt, Field(ge=400, le=599)] = 503
    retry_after: StrictBool = True
    codes: tuple[StrictStr, ...] = ()
    max_ms: Millis | None = None
    requires: ClassVar[frozenset[str]] = frozenset({"faults"})

    def judge(self, rec: Recording) -> Verdict:
        expected = f"{'/'.join(self.ops)} during {self.fault}: {self.status}"
        expected += " with Retry-After" if self.retry_after else ""
        expected += f" ({'|'.join(self.codes)})" if self.codes else ""
        expected += f" within {self.max_ms:g} ms" if self.max_ms is not None else ""
        during = [a for a in rec.answers if a.op in self.ops and rec.within_fault(a, self.fault)]
        if not during:
            return self._v(
                Outcome.ERROR, expected, "none sent during the fault", "nothing to judge"
            )
        bad = [a for a in during if self._why(a)]
        outcome = Outcome.PASS if not bad else Outcome.FAIL
        detail = "; ".join(f"{self._why(a)} at {a.t:.2f}s" for a in bad[:EXAMPLES])
        return self._v(
            outcome, expected, f"{len(during) - len(bad)}/{len(during)} as expected", detail
        )

    def _why(self, a: Answer) -> str | None:
        if a.status != self.status:
            return f"{a.op} answered {a.status or a.failure} {a.code or ''}".rstrip()
        if self.retry_after and not a.retry_after:
            return f"{a.op} {a.status} without Retry-After"
        if self.codes and a.code not in self.codes:
            return f"{a.op} {a.status} {a.code}"
        if self.max_ms is not None and a.latency_ms > self.max_ms:
            return f"{a.op} took {a.latency_ms:.0f} ms"
        return None


def normal(a: Answer) -> str | None:
    """Why this answer is not what the service says without any fault, or None."""
    if a.op in ("validate", "suspended"):
        want = (200, True) if a.expected == "active" else (403, None)
        if a.status != want[0] or (want[1] is not None and a.valid is not True) or a.degraded:
            return (
                f"{a.expected} validation answered {a.status or a.failure} {a.code or ''}".rstrip()
            )
        return None
    if a.op in ("webhook", "signup"):
        return None if a.status == 200 else f"webhook answered {a.status or a.failure}"
    return None if a.status is not None and a.status < 500 else f"{a.op}: {a.status or a.failure}"


class Unaffected(_Expectation):
    kind: Literal["unaffected"]
    ops: tuple[Op, ...] = ("validate", "suspended", "webhook")
    fault: FaultPrefix | None = None  # None: the whole run

    def judge(self, rec: Recording) -> Verdict:
        where = f"during {self.fault}" if self.fault else "throughout"
        expected = f"{'/'.join(self.ops)} {where}: as without any fault"
        during = [
            a
            for a in rec.answers
            if a.op in self.ops and (self.fault is None or rec.within_fault(a, self.fault))
        ]
        if not during:
            return self._v(
                Outcome.ERROR, expected, "none sent during the fault", "nothing to judge"
            )
        bad = [(a, why) for a in during if (why := normal(a))]
        outcome = Outcome.PASS if not bad else Outcome.FAIL
        detail = "; ".join(f"{why} at {a.t:.2f}s" for a, why in bad[:EXAMPLES])
        return self._v(outcome, expected, f"{len(during) - len(bad)}/{len(during)} normal", detail)


class LatencyP99(_Expectation):
    kind: Literal["latency_p99"]
    max_ms: Millis
    ops: tuple[Op, ...] = ("validate", "suspended")
    fault: FaultPrefix | None = None
    during: Literal["fault", "run"] = "fault"

    def judge(self, rec: Recording) -> Verdict:
        where = f"during {self.fault or 'the fault'}" if self.during == "fault" else "over the run"
        expected = f"p99 of {'/'.join(self.ops)} {where} <= {self.max_ms:g} ms"
        chosen = [
            a
            for a in rec.answers
            if a.op in self.ops and (self.during == "run" or rec.within_fault(a, self.fault))
        ]
        p99 = percentile([a.latency_ms for a in chosen], 99)
        if p99 is None:
            return self._v(Outcome.ERROR, expected, "no request", "nothing to judge")
        outcome = Outcome.PASS if p99 <= self.max_ms else Outcome.FAIL
        timeouts = sum(1 for a in chosen if a.failure == "timeout")
        return self._v(
            outcome, expected, f"{p99:.1f} ms", f"{len(chosen)} requests, {timeouts} timed out"
        )


class ServerErrors(_Expectation):
    kind: Literal["server_errors"]
    max: Annotated[StrictInt, Field(ge=0)] = 0
    ops: tuple[Op, ...] = OPERATIONS  # type: ignore[assignment]

    def judge(self, rec: Recording) -> Verdict:
        expected = f"<= {self.max} answers 5xx"
        chosen = [a for a in rec.answers if a.op in self.ops]
        if not chosen:
            return self._v(Outcome.ERROR, expected, "no request", "nothing to judge")
        errors = [a for a in chosen if a.status is not None and a.status >= 500]
        outcome = Outcome.PASS if len(errors) <= self.max else Outcome.FAIL
        codes = _counts(f"{a.status} {a.code or ''}".strip() for a in errors)
        return self._v(outcome, expected, f"{len(errors)} of {len(chosen)}", codes)


class ClientFailures(_Expectation):
    kind: Literal["client_failures"]
    fault: FaultPrefix | None = None

    def judge(self, rec: Recording) -> Verdict:
        expected = "timeouts or refused connections only during the fault"
        if not rec.answers:
            return self._v(Outcome.ERROR, expected, "no request", "nothing to judge")
        grace = (max(a.latency_ms for a in rec.answers) / 1000) if rec.answers else 0.0
        outside = [
            a for a in rec.answers if a.failure and not _near_fault(rec, a.t, grace, self.fault)
        ]
        inside = sum(1 for a in rec.answers if a.failure) - len(outside)
        outcome = Outcome.PASS if not outside else Outcome.FAIL
        detail = _counts(f"{a.failure} at {a.t:.1f}s" for a in outside[:EXAMPLES])
        return self._v(outcome, expected, f"{inside} during, {len(outside)} outside", detail)


def _near_fault(rec: Recording, t: float, grace: float, prefix: str | None) -> bool:
    for w in rec.fault_windows(prefix):
        end = w.end if w.end is not None else rec.end
        if w.start - grace <= t <= end + grace:
            return True
    return False


class Recovers(_Expectation):
    kind: Literal["recovers"]
    within_s: Annotated[StrictFloat | StrictInt, Field(gt=0, le=600)]
    fault: FaultPrefix | None = None

    def judge(self, rec: Recording) -> Verdict:
        expected = f"normal answers within {self.within_s:g}s of the fault's end, and after"
        end = rec.last_fault_end(self.fault)
        if end is None:
            return self._v(Outcome.ERROR, expected, "no fault", "nothing to judge")
        after = [a for a in _validations(rec) if a.t >= end]
        first = next((a for a in after if a.expected == "active" and normal(a) is None), None)
        if first is None:
            return self._v(
                Outcome.FAIL, expected, "no normal answer after the fault", f"{len(after)} sent"
            )
        if first.t - end > self.within_s:
            return self._v(
                Outcome.FAIL, expected, f"first normal answer {first.t - end:.2f}s after"
            )
        later = [(a, why) for a in after if a.t >= first.t and (why := normal(a))]
        if later:
            a, why = later[0]
            return self._v(
                Outcome.FAIL,
                expected,
                f"{len(later)} abnormal after recovery",
                f"{why} at {a.t:.2f}s",
            )
        return self._v(Outcome.PASS, expected, f"normal {first.t - end:.2f}s after the fault ended")


# --------------------------------------------------------------------------- time


def _moves(rec: Recording, at_least: float) -> list[float]:
    return [m.t for m in rec.clock_moves if m.seconds >= at_least]


class SessionsExpired(_Expectation):
    kind: Literal["sessions_expired"]
    requires: ClassVar[frozenset[str]] = frozenset({"test_clock"})

    def judge(self, rec: Recording) -> Verdict:
        expected = "after the jump: heartbeats 404 SESSION_EXPIRED, then a new session"
        moves = _moves(rec, SESSION_TTL_S)
        if not moves:
            return self._v(
                Outcome.ERROR, expected, f"no clock move >= {SESSION_TTL_S}s", "nothing to judge"
            )
        expired = renewed = 0
        sessions = [a for a in rec.answers if a.op == "session" and a.status is not None]
        for move in moves:
            by_license: dict[str, list[Answer]] = defaultdict(list)
            for a in sessions:
                by_license[a.license].append(a)
            for lic, answers in by_license.items():
                before = [
                    a for a in answers if a.t + a.latency_ms / 1000 < move and a.status == 200
                ]
                after = [a for a in answers if a.t > move]
                if not before or not after:
                    continue
                first = after[0]
                if first.action == "heartbeat":
                    if first.status != 404 or first.code != "SESSION_EXPIRED":
                        return self._v(
                            Outcome.FAIL,
                            expected,
                            f"heartbeat answered {first.status} {first.code or ''}",
                            f"{lic} at {first.t:.2f}s: a session dead for {SESSION_TTL_S}s revived",
                        )
                    expired += 1
                starts = [a for a in after if a.action in ("start", "takeover")]
                if any(a.status == 200 for a in starts):
                    renewed += 1
                elif starts:  # tried, and refused: the dead session still holds the license
                    got = f"{starts[0].status} {starts[0].code or ''}".strip()
                    return self._v(
                        Outcome.FAIL, expected, f"{lic}: a new session after the jump got {got}"
                    )
        if expired == 0 or renewed == 0:
            seen = f"{expired} heartbeats across the jump, {renewed} new sessions"
            return self._v(Outcome.ERROR, expected, seen, "nothing to judge")
        return self._v(Outcome.PASS, expected, f"{expired} expired, {renewed} renewed")


def expected_tier(gap_s: float) -> int:
    """The README's cache tiers, from the time since the previous validation."""
    if gap_s < 3600:
        return 3600
    if gap_s < 86400:
        return 1800
    return 900


class TiersRecomputed(_Expectation):
    kind: Literal["tiers_recomputed"]
    requires: ClassVar[frozenset[str]] = frozenset({"test_clock"})

    def judge(self, rec: Recording) -> Verdict:
        expected = "the first validation after a jump gets the tier of its real gap"
        moves = _moves(rec, 60)
        if not moves:
            return self._v(Outcome.ERROR, expected, "no clock move", "nothing to judge")
        judged = 0
        valid = sorted(
            (
                (t, a)
                for a in rec.answers
                if a.op == "validate"
                and a.status == 200
                and a.valid
                and not a.degraded
                and (t := parse_time(a.server_time)) is not None
            ),
            key=lambda pair: pair[0],
        )
        by_license: dict[str, list[tuple[datetime, Answer]]] = defaultdict(list)
        for t, a in valid:
            by_license[a.license].append((t, a))
        for move in moves:
            for answers in by_license.values():
                for (t0, a0), (t1, a1) in itertools.pairwise(answers):
                    if a0.t < move < a1.t:
                        want = expected_tier((t1 - t0).total_seconds())
                        judged += 1
                        if a1.tier_s != want:
                            gap = (t1 - t0).total_seconds()
                            return self._v(
                                Outcome.FAIL,
                                expected,
                                f"{a1.tier_s}s after a {gap:.0f}s gap",
                                f"expected {want}s; {a1.license} at {a1.t:.2f}s",
                            )
        if judged == 0:
            return self._v(Outcome.ERROR, expected, "no license validated across the jump", "")
        return self._v(Outcome.PASS, expected, f"{judged} licenses across the jump, each right")


# --------------------------------------------------------------------------- outbox


class OutboxDrains(_Expectation):
    kind: Literal["outbox_drains"]
    fault: FaultPrefix = "email"
    requires: ClassVar[frozenset[str]] = frozenset({"faults", "test_clock"})

    def judge(self, rec: Recording) -> Verdict:
        expected = "queued grows during the outage, then 0 queued, each email once"
        if not rec.outbox:
            return self._v(Outcome.ERROR, expected, "no outbox sample", "nothing to judge")
        inside = [o for o in rec.outbox if rec.in_fault(o.t, self.fault)]
        if not inside or max(o.queued for o in inside) == 0:
            return self._v(Outcome.FAIL, expected, "nothing queued during the outage")
        final = rec.outbox[-1]
        grew = max(o.queued for o in inside)
        peak_total = max(o.total for o in rec.outbox)
        if final.total < peak_total:
            return self._v(Outcome.FAIL, expected, f"{peak_total - final.total} emails lost")
        if final.queued:
            return self._v(Outcome.FAIL, expected, f"{final.queued} still queued at the end")
        if final.sent != final.sent_distinct:
            return self._v(Outcome.FAIL, expected, f"{final.sent - final.sent_distinct} sent twice")
        if final.sent_distinct not in (-1, final.delivered):
            sent = f"{final.sent_distinct} sent for {final.delivered} delivered"
            return self._v(Outcome.FAIL, expected, sent)
        return self._v(
            Outcome.PASS, expected, f"peak {grew} queued, {final.delivered} delivered once"
        )


class StormExactlyOnce(_Expectation):
    """Every storm of the method: no event acknowledged and lost, none applied
    twice, every license as the oracle says, no audit row or email lost or
    doubled (judged by :mod:`scenarios.storm_judge` on the answers and the
    database file), at least ``min_events`` events, and the outage or the kills
    that were asked for really happened."""

    kind: Literal["storm_exactly_once"]
    min_events: Annotated[StrictInt, Field(ge=1)] = 1
    requires: ClassVar[frozenset[str]] = frozenset({"test_clock", "faults"})

    def judge(self, rec: Recording) -> Verdict:
        expected = "0 lost, 0 applied twice, final states as the oracle, audit and emails once"
        if not rec.storms:
            return self._v(Outcome.ERROR, expected, "no storm ran", "nothing to judge")
        for s in rec.storms:
            bad = {
                k: s.get(k)
                for k in (
                    "lost",
                    "applied_twice",
                    "state_mismatches",
                    "audit_problems",
                    "email_problems",
                )
                if s.get(k) != 0
            }
            observed = (
                f"{s.get('events')} events, {s.get('attempts')} attempts, {s.get('kills')} kills"
            )
            if bad:
                detail = "; ".join(str(e) for e in s.get("examples", [])[:EXAMPLES])
                counts = ", ".join(f"{k} {v}" for k, v in bad.items())
                return self._v(Outcome.FAIL, expected, f"{counts} ({observed})", detail)
            if int(s.get("kills", 0)) < int(s.get("kills_asked", 0)):
                made = f"{s.get('kills')} of {s.get('kills_asked')} kills made"
                return self._v(Outcome.FAIL, expected, made, "the crash did not happen")
            if s.get("outage_asked") and not s.get("refused_in_outage"):
                return self._v(
                    Outcome.FAIL, expected, "nothing refused in the outage", "it did not happen"
                )
            if int(s.get("events", 0)) < self.min_events:
                return self._v(Outcome.FAIL, expected, f"only {s.get('events')} events", "")
            if s.get("examples"):
                return self._v(
                    Outcome.FAIL, expected, observed, "; ".join(s["examples"][:EXAMPLES])
                )
        last = rec.storms[-1]
        return self._v(
            Outcome.PASS,
            expected,
            f"{last.get('events')} events, {last.get('retried')} retries,"
            f" {last.get('refused_in_outage')} refused in the outage, {last.get('kills')} kills",
        )


class ReplicaFailover(_Expectation):
    kind: Literal["replica_failover"]
    within_s: Annotated[StrictFloat | StrictInt, Field(gt=0, le=60)] = 2
    requires: ClassVar[frozenset[str]] = frozenset({"process", "postgresql"})

    def judge(self, rec: Recording) -> Verdict:
        expected = (
            "the dead replica's deliveries retried on the others, each applied once;"
            f" the address reports it dead; no failure {self.within_s:g}s after the kill"
        )
        kills = rec.params.get("replica_kills") or []
        if not kills:
            return self._v(Outcome.ERROR, expected, "no replica killed", "nothing to judge")
        t, dead = float(kills[0]["t"]), int(kills[0]["replica"])
        problems = []
        storm = next((s for s in rec.storms if s.get("kills")), None)
        if storm is None:
            problems.append("no storm was running when the replica was killed")
        else:
            if not storm.get("unanswered"):
                problems.append("no delivery went unanswered: none reached the dead replica")
            for key in ("lost", "applied_twice"):
                if storm.get(key):
                    problems.append(f"{storm[key]} {key.replace('_', ' ')}")
        refused = rec.params.get("front_refused") or []
        if dead >= len(refused) or not refused[dead]:
            problems.append(f"the address never found replica {dead} dead ({refused})")
        fresh = rec.params.get("fresh_after_kill") or []
        if not fresh or any(status != 200 for status in fresh):
            problems.append(f"fresh clients after the kill answered {fresh}")
        after = [a for a in rec.answers if a.t >= t + self.within_s]
        bad = [a for a in after if a.failure or (a.status or 0) >= 500]
        if not after:
            problems.append(f"no load answer {self.within_s:g}s after the kill")
        elif bad:
            first = bad[0]
            problems.append(
                f"{len(bad)} of {len(after)} answers failed after the kill"
                f" (first {first.failure or first.status} at {first.t:.2f}s)"
            )
        observed = (
            f"replica {dead} killed at {t:.2f}s; {storm.get('unanswered') if storm else 0}"
            f" deliveries unanswered then retried; refused per replica {refused};"
            f" {len(after)} answers after"
        )
        if problems:
            return self._v(Outcome.FAIL, expected, observed, "; ".join(problems))
        return self._v(Outcome.PASS, expected, observed)


class OneSessionPerLicense(_Expectation):
    kind: Literal["one_session_per_license"]
    requires: ClassVar[frozenset[str]] = frozenset({"postgresql"})

    def judge(self, rec: Recording) -> Verdict:
        expected = "never more than one active session for a license (read from the database)"
        if not rec.sessions:
            return self._v(Outcome.ERROR, expected, "no database sample", "nothing to judge")
        most = max(int(s["alive"]) for s in rec.sessions)
        if most == 0:
            return self._v(Outcome.ERROR, expected, "no session ever alive", "nothing to judge")
        doubled = [s for s in rec.sessions if int(s["doubled"])]
        observed = f"{len(rec.sessions)} samples, up to {most} licenses with a session"
        if doubled:
            first = doubled[0]
            detail = f"{first['doubled']} licenses with two or more at {first['t']:.2f}s"
            return self._v(Outcome.FAIL, expected, f"{len(doubled)} samples doubled", detail)
        return self._v(Outcome.PASS, expected, observed)


def _counts(items: Any) -> str:
    counts: dict[str, int] = defaultdict(int)
    for item in items:
        counts[str(item)] += 1
    return ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))


Expectation = (
    BreakerOpens
    | HalfOpenTrials
    | BreakerCloses
    | AnsweredRatio
    | WrongAnswers
    | DegradedMarked
    | FailFast
    | Unaffected
    | LatencyP99
    | ServerErrors
    | ClientFailures
    | Recovers
    | SessionsExpired
    | TiersRecomputed
    | OutboxDrains
    | StormExactlyOnce
    | ReplicaFailover
    | OneSessionPerLicense
)

EXPECTATION_KINDS: dict[str, type[BaseModel]] = {
    model.model_fields["kind"].annotation.__args__[0]: model for model in Expectation.__args__
}


def judge_all(
    expect: Sequence[Any],
    rec: Recording,
    *,
    on_error: Callable[[str, Exception], None] | None = None,
) -> list[Verdict]:
    """Every expectation's verdict; a judge that raises is an ERROR, never a pass."""
    verdicts = []
    for e in expect:
        try:
            verdicts.append(e.judge(rec))
        except Exception as exc:  # a bug in a judge must not read as a verdict
            if on_error is not None:
                on_error(e.name, exc)
            verdicts.append(
                Verdict(e.name, Outcome.ERROR, "?", "judge failed", f"{type(exc).__name__}: {exc}")
            )
    return verdicts


def exit_code(verdicts: Sequence[Verdict]) -> int:
    """As the gate: 1 any FAIL; 2 any ERROR or nothing judged; else 0."""
    outcomes = {v.outcome for v in verdicts}
    if Outcome.FAIL in outcomes:
        return 1
    if Outcome.ERROR in outcomes or not (outcomes - {Outcome.SKIP}):
        return 2
    return 0


__all__ = [
    "EXPECTATION_KINDS",
    "Expectation",
    "Outcome",
    "Verdict",
    "exit_code",
    "expected_tier",
    "is_wrong",
    "judge_all",
    "normal",
]
