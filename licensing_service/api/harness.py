"""Test-only routes (``serve --test-clock``): move time, read the outbox,
rehearse a database outage. Absent (404) on a server started without it."""

from __future__ import annotations

import math

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from licensing_service.adapters.clock import MovableClock
from licensing_service.adapters.sqlite_store import FaultSwitch
from licensing_service.adapters.sqltime import from_db
from licensing_service.api import responses as r
from licensing_service.api.app import Handlers, new_request_id
from licensing_service.contract import routes as paths
from licensing_service.contract.models import ClockRequest, DbFaultRequest
from licensing_service.service.errors import InvalidRequest, LicensingError
from licensing_service.service.licensing import iso
from licensing_service.service.ports import Store

MAX_ADVANCE_SECONDS = 10 * 365 * 86400  # ten years: more is a typo, not a test


class HarnessHandlers:
    def __init__(self, clock: MovableClock, store: Store, faults: FaultSwitch) -> None:
        self.clock = clock
        self.store = store
        self.faults = faults

    def routes(self) -> list[Route]:
        return [
            Route(paths.HARNESS_CLOCK, self.read_clock, methods=["GET"]),
            Route(paths.HARNESS_CLOCK, self.move_clock, methods=["POST"]),
            Route(paths.HARNESS_EMAILS, self.emails, methods=["GET"]),
            Route(paths.HARNESS_DB_FAULT, self.read_fault, methods=["GET"]),
            Route(paths.HARNESS_DB_FAULT, self.set_fault, methods=["POST"]),
        ]

    def _clock_view(self) -> Response:
        body = {"now": iso(self.clock.now()), "offset_seconds": self.clock.offset_seconds()}
        return r.json_response(body, 200, {"Cache-Control": r.NO_STORE})

    async def read_clock(self, request: Request) -> Response:
        del request
        return self._clock_view()

    async def move_clock(self, request: Request) -> Response:
        try:
            req = await Handlers.parse(ClockRequest, request)
            if (req.advance_seconds is None) == (req.set is None):
                raise InvalidRequest([("body", "Give exactly one of advance_seconds or set")])
            if req.advance_seconds is not None:
                step = req.advance_seconds
                if not math.isfinite(step) or abs(step) > MAX_ADVANCE_SECONDS:
                    raise InvalidRequest([("advance_seconds", "Must be within ten years")])
                self.clock.advance(req.advance_seconds)
            elif req.set is not None:
                if req.set.tzinfo is None:
                    raise InvalidRequest([("set", "Give a timezone (e.g. Z or +00:00)")])
                self.clock.set(req.set)
        except LicensingError as exc:
            return r.unified_error(exc, new_request_id(), self.clock.now(), paths.HARNESS_CLOCK)
        return self._clock_view()

    async def emails(self, request: Request) -> Response:
        del request
        with self.store.transaction() as tx:
            rows = tx.outbox(limit=10_000)
        for row in rows:
            for key in ("next_attempt_at", "created_at", "delivered_at"):
                row[key] = iso(from_db(row[key]))
        return r.json_response({"emails": rows}, 200, {"Cache-Control": r.NO_STORE})

    async def read_fault(self, request: Request) -> Response:
        del request
        return r.json_response({"failing": self.faults.failing}, 200)

    async def set_fault(self, request: Request) -> Response:
        try:
            req = await Handlers.parse(DbFaultRequest, request)
        except LicensingError as exc:
            return r.unified_error(exc, new_request_id(), self.clock.now(), paths.HARNESS_DB_FAULT)
        self.faults.failing = req.failing
        return r.json_response({"failing": self.faults.failing}, 200)
