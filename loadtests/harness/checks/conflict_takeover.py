"""``conflict_takeover``: one alive session per license; a takeover kicks the other device."""

from __future__ import annotations

from licensing_service.contract import ErrorCode
from loadtests.harness.checks.target import CheckFailed, Target, expect


def check_conflict_takeover(target: Target) -> str:
    target.require(secret=True)
    cred = target.licenses("conflict-takeover", 1)[0]
    a, b = f"gate-{target.run}-a", f"gate-{target.run}-b"
    expect(target.session(cred, "start", a, "a"), 200, None, "device A's session start")
    refused = target.session(cred, "start", b, "b")
    if not refused.is_(409, ErrorCode.SESSION_CONFLICT):
        raise CheckFailed(
            f"device B's start while A's session is alive answered {refused.describe()},"
            " expected 409 SESSION_CONFLICT (two sessions would be alive)"
        )
    info = refused.body.get("conflictInfo")
    if not isinstance(info, dict) or not info.get("lastSeen"):
        raise CheckFailed(
            f"409 SESSION_CONFLICT came with conflictInfo {info!r}, expected an object"
            " with deviceInfo and lastSeen"
        )
    expect(target.session(cred, "heartbeat", a), 200, None, "A's heartbeat after B was refused")
    expect(target.session(cred, "takeover", b, "b"), 200, None, "device B's takeover")
    expect(
        target.session(cred, "heartbeat", a),
        409,
        ErrorCode.SESSION_KICKED,
        "A's heartbeat after B's takeover",
    )
    expect(target.session(cred, "heartbeat", b), 200, None, "B's heartbeat after its takeover")
    expect(
        target.session(cred, "start", a, "a"),
        409,
        ErrorCode.SESSION_CONFLICT,
        "A's new start while B's session is alive",
    )
    expect(target.session(cred, "heartbeat", b), 200, None, "B's heartbeat after A was refused")
    return (
        "B's start → 409 SESSION_CONFLICT with conflictInfo, takeover → 200,"
        " A's heartbeat → 409 SESSION_KICKED, A's restart → 409, B alive throughout"
    )
