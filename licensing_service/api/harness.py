"""Test-only routes (``serve --test-clock``): move time, read the outbox,
inject faults (``contract/faults.py``). Absent (404) on a server started
without it."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs

import orjson

from licensing_service.adapters.clock import MovableClock
from licensing_service.adapters.sqltime import from_db
from licensing_service.api import render as r
from licensing_service.api.app import Handlers, new_request_id
from licensing_service.api.asgi import Handler, Incoming, Outgoing
from licensing_service.contract import routes as paths
from licensing_service.contract.faults import FaultsRequest, FaultsView
from licensing_service.contract.models import ClockRequest
from licensing_service.service.errors import (
    InvalidRequest,
    LicensingError,
    WebhookRejected,
)
from licensing_service.service.faults import Faults
from licensing_service.service.guard import StoreGuard

MAX_ADVANCE_SECONDS = 10 * 365 * 86400  # ten years: more is a typo, not a test
# Far from datetime's limits, so no moved clock can overflow a date computation.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
# What a rejected webhook delivery is told; Stripe keeps its own schedule anyway.
REJECT_RETRY_AFTER = 5


class HarnessHandlers:
    def __init__(
        self,
        clock: MovableClock,
        guard: StoreGuard,
        faults: Faults,
    ) -> None:
        self.clock = clock
        self.guard = guard
        self.faults = faults

    def routes(self) -> dict[str, dict[str, Handler]]:
        return {
            paths.HARNESS_CLOCK: {"GET": self.read_clock, "POST": self.move_clock},
            paths.HARNESS_EMAILS: {"GET": self.emails},
            paths.HARNESS_FAULTS: {"GET": self.read_faults, "POST": self.set_faults},
        }

    def _clock_view(self) -> Outgoing:
        body = {"now": r.iso(self.clock.now()), "offset_seconds": self.clock.offset_seconds()}
        return r.json_response(body, 200, [r.NO_STORE])

    def read_clock(self, request: Incoming) -> Outgoing:
        del request
        return self._clock_view()

    def move_clock(self, request: Incoming) -> Outgoing:
        try:
            req = Handlers.parse(ClockRequest, request)
            if (req.advance_seconds is None) == (req.set is None):
                raise InvalidRequest([("body", "Give exactly one of advance_seconds or set")])
            if req.advance_seconds is not None:
                step = req.advance_seconds
                if not math.isfinite(step) or abs(step) > MAX_ADVANCE_SECONDS:
                    raise InvalidRequest([("advance_seconds", "Must be within ten years")])
                landing = self.clock.now() + timedelta(seconds=step)
                if not EARLIEST <= landing <= LATEST:
                    raise InvalidRequest([("advance_seconds", "Would leave 2000-2200")])
                self.clock.advance(req.advance_seconds)
            elif req.set is not None:
                if req.set.tzinfo is None:
                    raise InvalidRequest([("set", "Give a timezone (e.g. Z or +00:00)")])
                if not EARLIEST <= req.set.astimezone(UTC) <= LATEST:
                    raise InvalidRequest([("set", "Must be between 2000 and 2200")])
                self.clock.set(req.set)
        except LicensingError as exc:
            return r.unified_error(exc, new_request_id(), self.clock.now(), paths.HARNESS_CLOCK)
        return self._clock_view()

    def emails(self, request: Incoming) -> Outgoing:
        """``?recipient=a@b.c`` (repeatable) lists only theirs: the whole outbox of a
        busy service is a long render that would stall every other request."""
        query = parse_qs(request.query.decode("latin-1"))
        recipients = query.get("recipient", [])[:1000]
        now = self.clock.now()
        try:
            with self.guard.autocommit(now) as uow:
                rows = uow.outbox.listing(limit=10_000, recipients=recipients)
        except LicensingError as exc:
            return r.unified_error(exc, new_request_id(), now, paths.HARNESS_EMAILS)
        for row in rows:
            for key in ("next_attempt_at", "created_at", "delivered_at"):
                row[key] = r.iso(from_db(row[key]))
        return r.json_response({"emails": rows}, 200, [r.NO_STORE])

    def read_faults(self, request: Incoming) -> Outgoing:
        del request
        return self._faults_view(self.faults.view())

    def set_faults(self, request: Incoming) -> Outgoing:
        """Per process: with --workers N, each worker has its own faults."""
        try:
            req = Handlers.parse(FaultsRequest, request)
            if not req.model_fields_set:
                # {} changes nothing: more likely a typo than a request.
                raise InvalidRequest(
                    [("body", "Give clear or at least one of db, stripe, email, webhook")]
                )
            view = self.faults.apply(req)
        except LicensingError as exc:
            return r.unified_error(exc, new_request_id(), self.clock.now(), paths.HARNESS_FAULTS)
        return self._faults_view(view)

    @staticmethod
    def _faults_view(view: FaultsView) -> Outgoing:
        return Outgoing(200, view.model_dump_json().encode(), [r.JSON_TYPE, r.NO_STORE])

    def wrap(self, routes: dict[str, dict[str, Handler]]) -> None:
        """Put the faults in front of the routes they concern: ``/health``
        lists the active ones, ``POST /webhook`` is refused while rejected."""
        health = routes[paths.HEALTH]["GET"]
        webhook = routes[paths.WEBHOOK]["POST"]
        faults = self.faults
        clock = self.clock

        def health_with_faults(request: Incoming) -> Outgoing:
            out = health(request)
            assert isinstance(out, Outgoing), "/health is synchronous"
            body = orjson.loads(out.body)
            body["faults"] = {"active": faults.active()}
            out.body = orjson.dumps(body)
            return out

        async def webhook_or_reject(request: Incoming) -> Outgoing:
            if faults.reject_webhooks:
                # Before the body is parsed or its signature checked: nothing is applied.
                exc = WebhookRejected(
                    "Webhook endpoint down (injected fault)", retry_after=REJECT_RETRY_AFTER
                )
                return r.unified_error(exc, new_request_id(), clock.now(), paths.WEBHOOK)
            out = webhook(request)
            # Answered once its batch has committed (service/webhook_batch.py).
            return out if isinstance(out, Outgoing) else await out

        routes[paths.HEALTH]["GET"] = health_with_faults
        routes[paths.WEBHOOK]["POST"] = webhook_or_reject
