"""Tills holding the one device session their license allows.

A device starts a session, heartbeats (every ``LH_LOAD_HEARTBEAT_SECONDS``;
real tills every 30 s) and now and then dies silently: it stops
heartbeating and, later, starts again, meeting its own stale session or a
conflict. A few devices are second tills that take the license over; the
till they kicked learns it from its next heartbeat (409 SESSION_KICKED) and
takes it back later. Every answer is judged by its body: an expected
refusal (conflict, kicked, expired) is a success, a wrong shape a failure.
"""

from __future__ import annotations

import random
import uuid
from typing import Any

from locust import FastHttpUser, task

from licensing_service.contract import routes
from loadtests import common
from loadtests.shapes import shape_from_env

SESSION_SHARE = (0.7, 1.0)  # the last 30% of the licenses
DIE_CHANCE = 0.02  # per heartbeat
TAKEOVER_CHANCE = 0.3  # a device finding its license taken takes it back


class SessionDevice(FastHttpUser):
    weight = 20

    def on_start(self) -> None:
        self.license = common.licenses().take("sessions", SESSION_SHARE)
        self.every = common.env_float("LH_LOAD_HEARTBEAT_SECONDS", 0.5)
        self.session_id: str | None = None
        self.host_name = f"till-{uuid.uuid4().hex[:8]}"

    def wait_time(self) -> float:
        return self.every * random.uniform(0.9, 1.1)

    @task
    def live(self) -> None:
        if self.session_id is None:
            self.open_session(takeover=False)
        elif random.random() < DIE_CHANCE:
            self.session_id = None  # silent death: no end, no more heartbeats
        else:
            self.heartbeat()

    def _request(self, action: str, session_id: str) -> dict[str, Any]:
        lic = self.license
        return {
            "operation": "session",
            "action": action,
            "credentials": {"email": lic.email, "token": lic.token, "sessionId": session_id},
            "device": {
                "machineFingerprint": lic.fingerprint,
                "deviceInfo": {"hostname": self.host_name},
            },
        }

    # Not `start`: that is Locust's own User.start.
    def open_session(self, *, takeover: bool) -> None:
        session_id = f"sess-{uuid.uuid4().hex}"
        action = "takeover" if takeover else "start"
        conflict = False
        with self.client.post(
            routes.VALIDATE_UNIFIED,
            json=self._request(action, session_id),
            name=f"session {action}",
            catch_response=True,
        ) as response:
            data = common.body_of(response) or {}
            granted = (data.get("session") or {}).get("sessionId") == session_id
            if response.status_code == 200 and granted:
                self.session_id = session_id
                response.success()
            elif response.status_code == 409 and _code(data) == "SESSION_CONFLICT":
                # Another till holds the license: the expected answer, with its holder.
                conflict = data.get("conflictInfo") is not None
                if conflict:
                    response.success()
                else:
                    response.failure("SESSION_CONFLICT without conflictInfo")
            else:
                response.failure(f"{action}: status {response.status_code} {_code(data)}")
        if conflict and not takeover and random.random() < TAKEOVER_CHANCE:
            self.open_session(takeover=True)

    def heartbeat(self) -> None:
        assert self.session_id is not None
        with self.client.post(
            routes.VALIDATE_UNIFIED,
            json=self._request("heartbeat", self.session_id),
            name="session heartbeat",
            catch_response=True,
        ) as response:
            data = common.body_of(response) or {}
            code = _code(data)
            if response.status_code == 200 and data.get("success") is True:
                response.success()
            elif (response.status_code, code) in (
                (409, "SESSION_KICKED"),
                (404, "SESSION_EXPIRED"),  # the gate's checks moved the clock past 120 s
            ):
                response.success()
                self.session_id = None  # start again on the next beat
            else:
                response.failure(f"heartbeat: status {response.status_code} {code}")


def _code(data: dict[str, Any]) -> str | None:
    error = data.get("error")
    return error.get("code") if isinstance(error, dict) else None


Shape = shape_from_env()
