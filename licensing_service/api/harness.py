"""Test-only routes (``serve --test-clock``): move time, read the outbox,
rehearse a database outage. Absent (404) on a server started without it."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs

from licensing_service.adapters.clock import MovableClock
from licensing_service.adapters.sqlite_store import FaultSwitch
from licensing_service.adapters.sqltime import from_db
from licensing_service.api import render as r
from licensing_service.api.app import Handlers, new_request_id
from licensing_service.api.asgi import Handler, Incoming, Outgoing
from licensing_service.contract import routes as paths
from licensing_service.contract.models import ClockRequest, DbFaultRequest, WebhookFaultRequest
from licensing_service.service.errors import (
    InvalidRequest,
    LicensingError,
)
from licensing_service.service.guard import StoreGuard
from licensing_service.service.webhooks import WebhookFaults

MAX_ADVANCE_SECONDS = 10 * 365 * 86400  # ten years: more is a typo, not a test
# Far from datetime's limits, so no moved clock can overflow a date computation.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


class HarnessHandlers:
    def __init__(
        self,
        clock: MovableClock,
        guard: StoreGuard,
        faults: FaultSwitch,
        webhook_faults: WebhookFaults,
    ) -> None:
        self.clock = clock
        self.guard = guard
        self.faults = faults
        self.webhook_faults = webhook_faults

    def routes(self) -> dict[str, dict[str, Handler]]:
        return {
            paths.HARNESS_CLOCK: {"GET": self.read_clock, "POST": self.move_clock},
            paths.HARNESS_EMAILS: {"GET": self.emails},
            paths.HARNESS_DB_FAULT: {"GET": self.read_fault, "POST": self.set_fault},
            paths.HARNESS_WEBHOOK_FAULTS: {
                "GET": self.read_webhook_faults,
                "POST": self.set_webhook_faults,
            },
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

    def read_fault(self, request: Incoming) -> Outgoing:
        del request
        return r.json_response({"failing": self.faults.failing}, 200)

    def set_fault(self, request: Incoming) -> Outgoing:
        try:
            req = Handlers.parse(DbFaultRequest, request)
        except LicensingError as exc:
            return r.unified_error(exc, new_request_id(), self.clock.now(), paths.HARNESS_DB_FAULT)
        self.faults.failing = req.failing
        return r.json_response({"failing": self.faults.failing}, 200)

    def _webhook_faults_view(self) -> Outgoing:
        return r.json_response({"fail_once": sorted(self.webhook_faults.fail_once)}, 200)

    def read_webhook_faults(self, request: Incoming) -> Outgoing:
        del request
        return self._webhook_faults_view()

    def set_webhook_faults(self, request: Incoming) -> Outgoing:
        """Per process: with --workers N, a retry may reach another worker."""
        try:
            req = Handlers.parse(WebhookFaultRequest, request)
        except LicensingError as exc:
            now = self.clock.now()
            return r.unified_error(exc, new_request_id(), now, paths.HARNESS_WEBHOOK_FAULTS)
        self.webhook_faults.fail_once.update(req.fail_once)
        return self._webhook_faults_view()
