from datetime import UTC, datetime, timedelta

from licensing_service.domain.sessions import (
    Conflict,
    HeartbeatOutcome,
    Proceed,
    SessionRecord,
    is_alive,
    plan_heartbeat,
    plan_start,
    plan_takeover,
)

T0 = datetime(2026, 5, 1, tzinfo=UTC)


def rec(sid: str, seconds_ago: float, status: str = "active") -> SessionRecord:
    return SessionRecord(sid, 1, status, T0 - timedelta(seconds=seconds_ago))


def test_alive_at_119_dead_at_120() -> None:
    assert is_alive(T0, T0 + timedelta(seconds=119))
    assert is_alive(T0, T0 + timedelta(seconds=119.999999))
    assert not is_alive(T0, T0 + timedelta(seconds=120))


def test_start_conflicts_with_an_alive_other_session() -> None:
    decision = plan_start([rec("a", 119)], "b", T0)
    assert isinstance(decision, Conflict)
    assert decision.holder.session_id == "a"


def test_stale_sessions_never_block_and_are_expired() -> None:
    assert plan_start([rec("a", 120), rec("c", 500)], "b", T0) == Proceed(("a", "c"))


def test_restarting_ones_own_session_is_not_a_conflict() -> None:
    assert plan_start([rec("a", 1)], "a", T0) == Proceed(())


def test_takeover_kicks_every_other_session() -> None:
    assert plan_takeover([rec("a", 1), rec("b", 500), rec("c", 2)], "c") == ("a", "b")


def test_heartbeat_outcomes() -> None:
    assert plan_heartbeat(None, T0) is HeartbeatOutcome.NOT_FOUND
    assert plan_heartbeat(rec("a", 119), T0) is HeartbeatOutcome.ALIVE
    assert plan_heartbeat(rec("a", 120), T0) is HeartbeatOutcome.EXPIRED
    assert plan_heartbeat(rec("a", 1, "expired"), T0) is HeartbeatOutcome.EXPIRED
    assert plan_heartbeat(rec("a", 1, "kicked"), T0) is HeartbeatOutcome.KICKED
    assert plan_heartbeat(rec("a", 1, "ended"), T0) is HeartbeatOutcome.ENDED
