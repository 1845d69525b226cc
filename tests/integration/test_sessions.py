from typing import Any

import httpx

from licensing_service.api.render import iso
from licensing_service.contract import routes
from licensing_service.contract.models import LegacyResult, UnifiedError, UnifiedSuccess
from tests.conftest import Customer, add_customer
from tests.live import LiveServer
from tests.shapes import error_code, shaped

# Every test here runs on SQLite and on PostgreSQL (tests/conftest.py).
STORES = ("sqlite", "postgres")


def session(
    client: httpx.Client,
    c: Customer,
    action: str,
    sid: str,
    host: str = "till",
    *,
    shared: bool = False,
) -> httpx.Response:
    # Session ids are global; prefix them per license unless sharing is the point.
    sid = sid if shared else f"c{c.id}-{sid}"
    body: dict[str, Any] = {
        "operation": "session",
        "action": action,
        "credentials": {"email": c.email, "token": c.token, "sessionId": sid},
        "device": {"machineFingerprint": f"fp-{sid}", "deviceInfo": {"hostname": host}},
    }
    return client.post(routes.VALIDATE_UNIFIED, json=body)


def test_start_heartbeat_end(client: httpx.Client, customer: Customer) -> None:
    started = session(client, customer, "start", "a")
    assert started.status_code == 200
    body = shaped(UnifiedSuccess, started)
    assert body.session is not None and body.session.sessionId == f"c{customer.id}-a"
    assert body.session.deviceInfo is not None and body.session.deviceInfo.current == "till"
    assert shaped(UnifiedSuccess, session(client, customer, "heartbeat", "a")).session
    ended = session(client, customer, "end", "a")
    assert ended.status_code == 200 and ended.json()["session"]["status"] == "ended"
    assert error_code(session(client, customer, "heartbeat", "a")) == "SESSION_ENDED"


def test_heartbeat_window_is_alive_at_119_and_dead_at_120(
    client: httpx.Client, server: LiveServer, customer: Customer
) -> None:
    assert session(client, customer, "start", "a").status_code == 200
    server.clock.advance(119)
    assert session(client, customer, "heartbeat", "a").status_code == 200
    server.clock.advance(119)
    assert session(client, customer, "heartbeat", "a").status_code == 200
    server.clock.advance(120)
    expired = session(client, customer, "heartbeat", "a")
    assert expired.status_code == 404
    assert shaped(UnifiedError, expired).error.code == "SESSION_EXPIRED"
    # Never revived, even straight away.
    assert error_code(session(client, customer, "heartbeat", "a")) == "SESSION_EXPIRED"
    # Starting again is the way back, and it checks conflicts.
    assert session(client, customer, "start", "a").status_code == 200


def test_second_device_conflicts_while_first_is_alive(
    client: httpx.Client, server: LiveServer, customer: Customer
) -> None:
    began = server.clock.now()
    assert session(client, customer, "start", "a", host="till-a").status_code == 200
    server.clock.advance(119)
    conflict = session(client, customer, "start", "b", host="till-b")
    assert conflict.status_code == 409
    body = shaped(UnifiedError, conflict)
    assert body.error.code == "SESSION_CONFLICT" and body.conflict is True
    assert body.conflictInfo is not None
    assert body.conflictInfo.deviceInfo == {"hostname": "till-a"}
    assert body.conflictInfo.lastSeen == iso(began)


def test_stale_session_never_blocks_and_is_marked_expired(
    client: httpx.Client, server: LiveServer, customer: Customer
) -> None:
    assert session(client, customer, "start", "a").status_code == 200
    server.clock.advance(120)
    assert session(client, customer, "start", "b").status_code == 200
    assert error_code(session(client, customer, "heartbeat", "a")) == "SESSION_EXPIRED"
    status = server.run(
        lambda: (
            server.sqlite()
            .connection()
            .execute(
                "SELECT status FROM active_sessions WHERE session_id = ?", (f"c{customer.id}-a",)
            )
            .fetchone()[0]
        )
    )
    assert status == "expired"


def test_takeover_kicks_the_holder_and_queues_an_alert(
    client: httpx.Client, customer: Customer
) -> None:
    assert session(client, customer, "start", "a").status_code == 200
    taken = session(client, customer, "takeover", "b", host="back-office")
    assert taken.status_code == 200
    assert shaped(UnifiedSuccess, taken).session.takeover is True  # type: ignore[union-attr]
    kicked = session(client, customer, "heartbeat", "a")
    assert kicked.status_code == 409 and error_code(kicked) == "SESSION_KICKED"
    assert session(client, customer, "heartbeat", "b").status_code == 200
    # The kicked device cannot simply start again while the taker is alive.
    assert error_code(session(client, customer, "start", "a")) == "SESSION_CONFLICT"
    emails = client.get(routes.HARNESS_EMAILS).json()["emails"]
    alerts = [e for e in emails if e["customer_id"] == customer.id]
    assert [e["email_type"] for e in alerts] == ["machine_switch"]
    assert alerts[0]["payload"]["device"] == "back-office"


def test_unknown_session_and_foreign_session_ids(
    client: httpx.Client, server: LiveServer, customer: Customer
) -> None:
    assert error_code(session(client, customer, "heartbeat", "nope")) == "SESSION_NOT_FOUND"
    other = add_customer(server)
    assert session(client, other, "start", "shared-id", shared=True).status_code == 200
    taken = session(client, customer, "start", "shared-id", shared=True)
    assert taken.status_code == 409 and error_code(taken) == "SESSION_ID_TAKEN"
    # Another license's session is invisible, not "kicked" or "alive".
    hidden = session(client, customer, "heartbeat", "shared-id", shared=True)
    assert error_code(hidden) == "SESSION_NOT_FOUND"


def test_heartbeat_of_a_suspended_license_is_refused(
    client: httpx.Client, server: LiveServer, customer: Customer
) -> None:
    assert session(client, customer, "start", "a").status_code == 200
    server.run(
        lambda: server.parts.service.set_subscription_status(
            _call(server), customer.id, "inactive", "test"
        )
    )
    refused = session(client, customer, "heartbeat", "a")
    assert refused.status_code == 403 and error_code(refused) == "SUBSCRIPTION_INACTIVE"


def test_session_on_inactive_license_and_bad_token(
    client: httpx.Client, server: LiveServer
) -> None:
    lapsed = add_customer(server, status="inactive")
    assert error_code(session(client, lapsed, "start", "x")) == "SUBSCRIPTION_INACTIVE"
    forged = Customer(lapsed.id, lapsed.email, "POSPAL-XXXX", "")
    assert session(client, forged, "start", "x").status_code == 401


def test_legacy_session_routes(client: httpx.Client, customer: Customer) -> None:
    start = {
        "email": customer.email,
        "token": customer.token,
        "machineFingerprint": "fp",
        "sessionId": "legacy-a",
    }
    # (ids are unique because the legacy test is the only one using them)
    ok = client.post(routes.SESSION_START, json=start)
    assert ok.status_code == 200 and shaped(LegacyResult, ok).sessionId == "legacy-a"
    clash = client.post(routes.SESSION_START, json={**start, "sessionId": "legacy-b"})
    assert clash.status_code == 409 and shaped(LegacyResult, clash).conflict is True
    beat = client.post(routes.SESSION_HEARTBEAT, json={"sessionId": "legacy-a"})
    assert beat.status_code == 200 and shaped(LegacyResult, beat).timestamp
    took = client.post(routes.SESSION_TAKEOVER, json={**start, "sessionId": "legacy-b"})
    assert took.status_code == 200
    kicked = client.post(routes.SESSION_HEARTBEAT, json={"sessionId": "legacy-a"})
    assert kicked.status_code == 409 and error_code(kicked) == "SESSION_KICKED"
    end = client.post(routes.SESSION_END, json={"sessionId": "legacy-b"})
    assert end.status_code == 200 and shaped(LegacyResult, end).emailSent is False
    missing = client.post(routes.SESSION_END, json={"sessionId": "never-was"})
    assert missing.status_code == 404 and error_code(missing) == "SESSION_NOT_FOUND"


def _call(server: LiveServer) -> object:
    from licensing_service.service.licensing import Call

    return Call("req_test", "127.0.0.1", server.clock.now())
