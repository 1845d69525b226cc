"""Recordings built by hand: a good database outage, to be broken one invariant at a time."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from loadtests.rehearsal_load import Answer
from scenarios.recording import BreakerSample, ClockMove, FaultWindow, Recording

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
OPEN_S = 30


def iso(t: float, offset: float = 0.0) -> str:
    return (EPOCH + timedelta(seconds=t + offset)).isoformat().replace("+00:00", "Z")


def offset_at(t: float) -> float:
    """The service clock's offset: moved by 30 s at t=4 and at t=7."""
    return OPEN_S * sum(1 for m in (4.0, 7.0) if t >= m)


def answer(t: float, op: str = "validate", **fields: object) -> Answer:
    base: dict[str, object] = {
        "t": t,
        "op": op,
        "license": fields.pop("license", "a@x.test" if op != "suspended" else "s@x.test"),
        "expected": "active" if op == "validate" else ("suspended" if op == "suspended" else ""),
        "latency_ms": 2.0,
        "status": 200,
        "server_time": iso(t, offset_at(t)),
    }
    if op == "validate":
        base.update(valid=True, degraded=False, tier_s=3600)
    if op == "suspended":
        base.update(status=403, code="SUBSCRIPTION_INACTIVE", tier_s=300)
    if op == "session":
        base.update(action="heartbeat", license="sess@x.test")
    base.update(fields)
    return Answer(**base)  # type: ignore[arg-type]


def in_outage(t: float) -> bool:
    return 2.0 <= t <= 7.0  # breaker open from 2.1 to 7.0; fault 2..6


def db_outage() -> Recording:
    """Fault db.errors 2..6 s; OPEN at 2.1 after 5 failures; clock +30 at 4 (trial
    fails: 6 failures), fault cleared at 6, clock +30 at 7 (trial succeeds)."""
    answers = []
    for n in range(100):
        t = n * 0.1
        out = in_outage(t)
        answers.append(answer(t, degraded=out, tier_s=300 if out else 3600))
        answers.append(answer(t + 0.01, "suspended", degraded=out))
        if 2.0 <= t < 6.0:
            answers.append(
                answer(
                    t + 0.02, "session", status=503, code="CIRCUIT_BREAKER_OPEN", retry_after="30"
                )
            )
        else:
            answers.append(answer(t + 0.02, "session"))
    breaker = []
    for n in range(100):
        t = n * 0.1 + 0.05
        if t < 2.1:
            state, failures, opened = "CLOSED", 0, None
        elif t < 4.05:
            state, failures, opened = "OPEN", 5, 2.1
        elif t < 7.05:
            state, failures, opened = "OPEN", 6, 4.0
        else:
            state, failures, opened = "CLOSED", 0, None
        nxt = iso(opened + OPEN_S, offset_at(opened)) if opened is not None else None
        breaker.append(BreakerSample(t, state, failures, "healthy", iso(t, offset_at(t)), nxt))
    return Recording(
        answers=answers,
        breaker=breaker,
        faults=[FaultWindow(2.0, 6.0, ("db.errors",))],
        clock_moves=[ClockMove(4.0, OPEN_S), ClockMove(7.0, OPEN_S)],
        params={"breaker_threshold": 5, "breaker_open_seconds": OPEN_S},
        end=10.0,
    )


def with_answers(rec: Recording, change: object) -> Recording:
    """``rec`` with each answer passed through ``change`` (answer -> answer)."""
    return replace(rec, answers=[change(a) for a in rec.answers])  # type: ignore[operator]
