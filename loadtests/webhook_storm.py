"""Stripe delivering a storm of webhooks: a fake Stripe stream from
``fixtures/`` (``stripe generate``: duplicates, reordering, forgeries),
signed at send time, posted by several users at once.

A genuine delivery must be answered 200 ``received: true``; a forged one
400 ``WEBHOOK_SIGNATURE_INVALID``; anything else is a failure. When the
stream runs out it starts again: every event is then a duplicate, which
the service must answer ``idempotent: true``.

    LH_LOAD_STREAM=stream.jsonl LH_WEBHOOK_SECRET=whsec_... \\
        locust -f loadtests/webhook_storm.py --host URL
"""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from locust import FastHttpUser, constant_throughput, task

from fixtures.stripe.delivery import Delivery
from fixtures.stripe.recording import read_stream
from fixtures.stripe.sender import altered
from licensing_service.contract import routes
from licensing_service.contract import stripe as contract
from loadtests import common
from loadtests.shapes import shape_from_env


class _Storm:
    """The stream, shared by the users of one process, cycled."""

    def __init__(self, deliveries: list[Delivery], secrets: list[str]) -> None:
        self._cycle: Iterator[tuple[int, Delivery]] = itertools.cycle(enumerate(deliveries))
        self._lock = threading.Lock()
        # Events this process has seen answered 200: any later delivery of one
        # must be answered idempotent (each event's effects exactly once).
        self.acknowledged: set[str] = set()
        self.secrets = secrets
        self.bodies = {d.event_id: json.dumps(d.event).encode() for d in deliveries}
        self.clock: Callable[[], float] = time.time
        # One client for every clock re-read: building one per call (TLS context and
        # all) cost the load generator ~20 ms of CPU each time, stalling every user.
        self._http = httpx.Client(timeout=5)

    def resync(self, host: str) -> float:
        """Re-read the service's clock; returns how far it moved from our idea of it."""
        from fixtures.target import target_clock

        clock = target_clock(host.rstrip("/") + routes.WEBHOOK, self._http)
        with self._lock:
            moved = abs(clock() - self.clock())
            self.clock = clock
        return moved

    def next(self) -> Delivery:
        with self._lock:
            return next(self._cycle)[1]


_storm: _Storm | None = None
_storm_lock = threading.Lock()


def storm(host: str) -> _Storm:
    global _storm
    with _storm_lock:
        if _storm is None:
            path = os.environ.get("LH_LOAD_STREAM")
            secrets = [s for s in os.environ.get("LH_WEBHOOK_SECRET", "").split(",") if s]
            if not path or not secrets:
                raise SystemExit("the webhook storm needs LH_LOAD_STREAM and LH_WEBHOOK_SECRET")
            _, deliveries = read_stream(Path(path))
            _storm = _Storm(deliveries, secrets)
            # Sign on the service's clock: the gate's checks move it.
            _storm.resync(host)
        return _storm


class StripeWebhooks(FastHttpUser):
    """Each user delivers at most ``LH_STORM_RATE`` events a second (default 20):
    a storm next to a fleet, not a flood that starves it. Set 0 for back-to-back."""

    weight = 10

    def on_start(self) -> None:
        self.storm = storm(self.host or "")
        rate = common.env_float("LH_STORM_RATE", 20.0)
        self.pace: Any = constant_throughput(rate) if rate > 0 else None

    def wait_time(self) -> float:
        return float(self.pace(self)) if self.pace is not None else 0.0

    @task
    def deliver(self) -> None:
        delivery = self.storm.next()
        # Read before sending: a 200 seen for this event *before* our request left
        # means the service must call ours a duplicate. (Read after the answer, a
        # concurrent twin's acknowledgement would make a correct answer look wrong.)
        acknowledged = delivery.event_id in self.storm.acknowledged
        future = delivery.forgery is not None and delivery.forgery.value == "future_timestamp"
        if future:
            # "Ahead of the service's clock" only means something on its current clock.
            self.storm.resync(self.host or "")
        for _attempt in range(3):
            body, header = self.sign(delivery)
            with self.client.post(
                routes.WEBHOOK,
                data=body,  # type: ignore[arg-type]  # bytes, as documented; the stub says str
                headers={"content-type": "application/json", contract.SIGNATURE_HEADER: header},
                name="webhook",
                catch_response=True,
            ) as response:
                if clock_moved(response, delivery):
                    # The gate's checks moved the service's clock between our signing
                    # and its verifying: a correct refusal. Re-read the clock, re-sign
                    # (a few times: a check may move it again meanwhile).
                    response.success()
                    self.storm.resync(self.host or "")
                    continue
                problem = judge_delivery(response, delivery, acknowledged)
                # Accepted though signed ahead of the service? Unless the checks moved
                # its clock past our timestamp in flight: then inconclusive, no fault.
                if (
                    problem
                    and future
                    and response.status_code == 200
                    and self.storm.resync(self.host or "") > contract.TOLERANCE_SECONDS
                ):
                    problem = None
                if problem:
                    response.failure(problem)
                else:
                    response.success()
                    if delivery.forgery is None:
                        self.storm.acknowledged.add(delivery.event_id)
                return

    def sign(self, delivery: Delivery) -> tuple[bytes, str]:
        body = self.storm.bodies[delivery.event_id]
        now = int(self.storm.clock())
        secrets = self.storm.secrets
        forgery = delivery.forgery.value if delivery.forgery else None
        if forgery == "stale_timestamp":
            now -= contract.TOLERANCE_SECONDS + 60
        elif forgery == "future_timestamp":
            now += contract.TOLERANCE_SECONDS + 60
        elif forgery == "bad_signature":
            secrets = ["whsec_not_the_endpoint_secret"]
        header = contract.signature_header(body, secrets, now)
        if forgery == "altered_body":
            body = altered(body)
        return body, header


def clock_moved(response: Any, delivery: Delivery) -> bool:
    """A genuine delivery refused for its timestamp: the service's clock jumped."""
    if delivery.forgery is not None or response.status_code != 400:
        return False
    error = (common.body_of(response) or {}).get("error") or {}
    message = str(error.get("message", ""))
    return error.get("code") == "WEBHOOK_SIGNATURE_INVALID" and (
        "old" in message or "future" in message
    )


def judge_delivery(response: Any, delivery: Delivery, acknowledged: bool) -> str | None:
    data = common.body_of(response) or {}
    if delivery.forgery is not None:
        code = (data.get("error") or {}).get("code")
        if response.status_code == 400 and code == "WEBHOOK_SIGNATURE_INVALID":
            return None
        return f"a forged delivery ({delivery.forgery.value}) got {response.status_code} {code}"
    if response.status_code != 200 or data.get("received") is not True:
        code = (data.get("error") or {}).get("code")
        return f"status {response.status_code} {code or ''}".strip()
    if acknowledged and data.get("idempotent") is not True:
        return "an event already acknowledged was processed again (idempotent is not true)"
    return None


Shape = shape_from_env()
