"""``heartbeat_expiry``: a session lives exactly 120 s after its last heartbeat."""

from __future__ import annotations

from licensing_service.contract import ErrorCode
from loadtests.harness.checks.target import CheckFailed, Target, require_elapsed

SESSION_ALIVE_SECONDS = 119
SESSION_TTL_SECONDS = 120


def check_heartbeat_expiry(target: Target) -> str:
    target.require(clock=True, secret=True)
    cred = target.licenses("heartbeat-expiry", 1)[0]
    session_id = f"gate-{target.run}-hb"
    latest = target.session(cred, "start", session_id, "a")
    if not latest.is_(200):
        raise CheckFailed(f"session start answered {latest.describe()}, expected 200")
    for n in (1, 2):
        target.advance(SESSION_ALIVE_SECONDS)
        beat = target.session(cred, "heartbeat", session_id)
        require_elapsed(latest, beat, SESSION_ALIVE_SECONDS)
        if not beat.is_(200):
            after = "the start" if n == 1 else "the previous heartbeat (which must refresh it)"
            raise CheckFailed(
                f"heartbeat {SESSION_ALIVE_SECONDS} s after {after} answered {beat.describe()},"
                " expected 200 (alive while the last heartbeat is under 120 s old)"
            )
        latest = beat
    target.advance(SESSION_TTL_SECONDS)
    beat = target.session(cred, "heartbeat", session_id)
    require_elapsed(latest, beat, SESSION_TTL_SECONDS)
    if not beat.is_(404, ErrorCode.SESSION_EXPIRED):
        raise CheckFailed(
            f"heartbeat {SESSION_TTL_SECONDS} s after the last one answered {beat.describe()},"
            " expected 404 SESSION_EXPIRED"
        )
    again = target.session(cred, "heartbeat", session_id)
    if not again.is_(404, ErrorCode.SESSION_EXPIRED):
        raise CheckFailed(
            f"the heartbeat after an expired one answered {again.describe()}, expected 404"
            " SESSION_EXPIRED (a dead session is never revived)"
        )
    restart = target.session(cred, "start", f"{session_id}-2", "a")
    if not restart.is_(200):
        raise CheckFailed(
            f"a new session start after the expiry answered {restart.describe()}, expected 200"
            " (a dead session must not block the license)"
        )
    return (
        "heartbeats at +119 s and +119 s → 200, at +120 s → 404 SESSION_EXPIRED twice,"
        " a new start → 200"
    )
