"""Every response shape, byte for byte, against a recorded golden file.

One scripted conversation with a live server on a fixed clock: validations
(unified and legacy, success and each refusal), instant validation, the
session life cycle with a conflict and a takeover, bad input, webhooks and
health. Request ids and measured times are masked; everything else (key
order, datetimes, nulls, headers) must match. Refresh the file on purpose
only: ``LH_UPDATE_GOLDEN=1 pytest tests/contract/test_golden_responses.py``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from licensing_service.contract import routes
from licensing_service.contract import stripe as contract
from licensing_service.service.ports import NewCustomer
from tests.conftest import TEST_WEBHOOK_SECRET
from tests.conftest import test_settings as settings_in
from tests.live import LiveServer

GOLDEN = Path(__file__).with_name("golden_responses.json")
HEADERS = ("content-type", "cache-control", "x-api-version", "x-cache-strategy")
HEADERS += ("x-cache-duration", "retry-after")
MASKS = (
    (re.compile(rb'"requestId":"req_[0-9a-f]+"'), b'"requestId":"<id>"'),
    (re.compile(rb'"responseTime":[0-9.]+'), b'"responseTime":"<ms>"'),
)

ACTIVE = ("active@golden.test", "POSPAL-GOLD-ACTI-VEAA-AAAA", "cs_golden_active")
INACTIVE = ("inactive@golden.test", "POSPAL-GOLD-INAC-TIVE-AAAA", "cs_golden_inactive")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = LiveServer(settings_in(tmp_path_factory.mktemp("golden"))).start()

    def seed() -> None:
        now = server.clock.now()
        with server.parts.store.transaction() as uow:
            for (email, token, session), status in ((ACTIVE, "active"), (INACTIVE, "inactive")):
                uow.licenses.insert(
                    NewCustomer(
                        email=email,
                        name="Golden Till",
                        unlock_token=token,
                        subscription_status=status,
                        stripe_session_id=session,
                        subscription_id="sub_golden",
                        current_period_end=now.replace(month=2),
                    ),
                    now,
                )

    server.run(seed)
    yield server
    server.stop()


def unified(operation: str, creds: tuple[str, str, str], **parts: Any) -> dict[str, Any]:
    email, token, session = creds
    body: dict[str, Any] = {"operation": operation, "credentials": {"email": email}}
    if operation == "instant":
        body["credentials"]["stripeSessionId"] = session
    else:
        body["credentials"]["token"] = token
    body["credentials"].update(parts.pop("credentials", {}))
    body.update(parts)
    return body


def conversation(live: LiveServer) -> Iterator[tuple[str, str, Any]]:
    """(method, path, JSON body or raw bytes) in order; the clock moves between some."""
    fp = {"machineFingerprint": "golden-till-1", "deviceInfo": {"hostname": "till-1"}}
    other = {"machineFingerprint": "golden-till-2", "deviceInfo": {"hostname": "till-2"}}
    wrong = (ACTIVE[0], "POSPAL-WRON-GWRO-NGWR-ONGG", "cs_wrong")
    unknown = ("nobody@golden.test", ACTIVE[1], "cs_none")
    yield "POST", routes.VALIDATE_UNIFIED, unified("validate", ACTIVE, device=fp)
    live.clock.advance(90)
    yield "POST", routes.VALIDATE_UNIFIED, unified("validate", ACTIVE, device=fp)
    yield "POST", routes.VALIDATE_UNIFIED, unified("validate", ACTIVE, device=other)
    yield (
        "POST",
        routes.VALIDATE_UNIFIED,
        unified("validate", ACTIVE, device={"machineFingerprint": "x", "skipMachineUpdate": True}),
    )
    yield "POST", routes.VALIDATE_UNIFIED, unified("validate", INACTIVE)
    yield "POST", routes.VALIDATE_UNIFIED, unified("validate", wrong)
    yield "POST", routes.VALIDATE_UNIFIED, unified("validate", unknown)
    yield "POST", routes.VALIDATE_UNIFIED, unified("instant", ACTIVE, device=fp)
    yield "POST", routes.VALIDATE_UNIFIED, unified("instant", INACTIVE, device=fp)
    yield "POST", routes.VALIDATE_UNIFIED, {"operation": "validate", "credentials": {}}
    yield "POST", routes.VALIDATE_UNIFIED, {"operation": "nope", "credentials": {"email": 1}}
    yield "POST", routes.VALIDATE_UNIFIED, b"{not json"
    session = {"sessionId": "golden-s1"}
    yield (
        "POST",
        routes.VALIDATE_UNIFIED,
        unified("session", ACTIVE, action="start", credentials=session, device=fp),
    )
    live.clock.advance(30)
    yield (
        "POST",
        routes.VALIDATE_UNIFIED,
        unified("session", ACTIVE, action="heartbeat", credentials=session),
    )
    yield (
        "POST",
        routes.VALIDATE_UNIFIED,
        unified(
            "session", ACTIVE, action="start", credentials={"sessionId": "golden-s2"}, device=other
        ),
    )
    yield (
        "POST",
        routes.VALIDATE_UNIFIED,
        unified(
            "session",
            ACTIVE,
            action="takeover",
            credentials={"sessionId": "golden-s2"},
            device=other,
        ),
    )
    yield (
        "POST",
        routes.VALIDATE_UNIFIED,
        unified("session", ACTIVE, action="heartbeat", credentials=session),
    )
    yield (
        "POST",
        routes.VALIDATE_UNIFIED,
        unified("session", ACTIVE, action="end", credentials={"sessionId": "golden-s2"}),
    )
    yield (
        "POST",
        routes.VALIDATE_UNIFIED,
        unified("session", ACTIVE, action="heartbeat", credentials={"sessionId": "golden-s2"}),
    )
    live.clock.advance(60)
    legacy = {"email": ACTIVE[0], "token": ACTIVE[1]}
    yield "POST", routes.VALIDATE_LEGACY, {**legacy, "machineFingerprint": "golden-till-1"}
    yield "POST", routes.VALIDATE_LEGACY, {"email": INACTIVE[0], "token": INACTIVE[1]}
    yield "POST", routes.VALIDATE_LEGACY, {"email": ACTIVE[0], "token": wrong[1]}
    yield "POST", routes.VALIDATE_LEGACY, {"email": ACTIVE[0]}
    yield (
        "POST",
        routes.INSTANT_VALIDATE_LEGACY,
        {
            "email": ACTIVE[0],
            "stripeSessionId": ACTIVE[2],
            "machineFingerprint": "golden-till-1",
        },
    )
    yield (
        "POST",
        routes.INSTANT_VALIDATE_LEGACY,
        {
            "email": INACTIVE[0],
            "stripeSessionId": INACTIVE[2],
            "machineFingerprint": "golden-till-1",
        },
    )
    start = {**legacy, "machineFingerprint": "golden-till-3", "deviceInfo": {"hostname": "t3"}}
    yield "POST", routes.SESSION_START, {**start, "sessionId": "golden-s3"}
    yield "POST", routes.SESSION_START, {**start, "sessionId": "golden-s4"}
    yield "POST", routes.SESSION_TAKEOVER, {**start, "sessionId": "golden-s4"}
    yield "POST", routes.SESSION_HEARTBEAT, {"sessionId": "golden-s4"}
    yield "POST", routes.SESSION_HEARTBEAT, {"sessionId": "golden-s3"}
    yield "POST", routes.SESSION_END, {"sessionId": "golden-s4"}
    yield "POST", routes.SESSION_END, {"sessionId": "golden-none"}
    live.clock.advance(200)
    yield "POST", routes.SESSION_HEARTBEAT, {"sessionId": "golden-s4"}
    yield "POST", routes.WEBHOOK, ("signed", {"id": "evt_golden", "type": "ping", "created": 1})
    yield "POST", routes.WEBHOOK, ("signed", {"id": "evt_golden", "type": "ping", "created": 1})
    yield "POST", routes.WEBHOOK, ("unsigned", {"id": "evt_golden2", "type": "ping"})
    yield "GET", routes.HEALTH_LIVE, None
    yield "GET", routes.HEALTH_READY, None
    yield "GET", "/no-such-route", None


def send(http: httpx.Client, live: LiveServer, method: str, path: str, body: Any) -> bytes:
    headers: dict[str, str] = {}
    content: bytes | None = None
    if isinstance(body, tuple):
        kind, event = body
        event = {"object": "event", "data": {"object": {}}, **event}
        content = json.dumps(event).encode()
        if kind == "signed":
            now = int(live.clock.now().timestamp())
            signature = contract.signature_header(content, TEST_WEBHOOK_SECRET, now)
            headers[contract.SIGNATURE_HEADER] = signature
    elif isinstance(body, bytes):
        content = body
    elif body is not None:
        content = json.dumps(body).encode()
    if content is not None:
        headers["content-type"] = "application/json"
    answer = http.request(method, path, content=content, headers=headers)
    kept = [f"{h}: {answer.headers[h]}" for h in HEADERS if h in answer.headers]
    masked = answer.content
    for pattern, replacement in MASKS:
        masked = pattern.sub(replacement, masked)
    return (
        f"{method} {path} -> {answer.status_code}\n".encode()
        + "\n".join(kept).encode()
        + (b"\n" + masked)
    )


def test_every_response_matches_its_golden_bytes(live: LiveServer) -> None:
    with httpx.Client(base_url=live.url, timeout=10) as http:
        seen = [send(http, live, *step).decode() for step in conversation(live)]
    if os.environ.get("LH_UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(json.dumps(seen, indent=1) + "\n", encoding="utf-8")
    recorded = json.loads(GOLDEN.read_text(encoding="utf-8"))
    assert len(seen) == len(recorded)
    for now, then in zip(seen, recorded, strict=True):
        assert now == then
