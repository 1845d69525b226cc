"""Routes of the reference service and their handlers.

Handlers parse, call one use case, and render. They are ``async`` only
because ASGI is; the use cases they call are synchronous and fast.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable
from time import perf_counter
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from licensing_service import __version__
from licensing_service.api import render as r
from licensing_service.api.asgi import Handler, Incoming, Outgoing
from licensing_service.config import Settings
from licensing_service.contract import routes as paths
from licensing_service.contract.models import (
    DeviceInfo,
    LegacyInstantRequest,
    LegacySessionRequest,
    LegacySessionStartRequest,
    LegacyValidateRequest,
    UnifiedRequest,
    missing_fields,
)
from licensing_service.domain.breaker import BreakerState
from licensing_service.service.errors import (
    InvalidRequest,
    LicensingError,
    StorageUnavailable,
)
from licensing_service.service.licensing import Call, LicensingService
from licensing_service.service.ports import Clock, Store

M = TypeVar("M", bound=BaseModel)

# Request ids must be unique, not secret: a random per-process prefix and a
# counter avoid a getrandom() syscall per request.
_ID_PREFIX = "req_" + secrets.token_hex(4)
_id_counter = itertools.count(1)


def new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_id_counter):08x}"


class Handlers:
    def __init__(
        self, service: LicensingService, store: Store, clock: Clock, settings: Settings
    ) -> None:
        self.service = service
        self.store = store
        self.clock = clock
        self.settings = settings

    def routes(self) -> dict[str, dict[str, Handler]]:
        return {
            paths.VALIDATE_UNIFIED: {"POST": self.validate_unified},
            paths.VALIDATE_LEGACY: {"POST": self.legacy_validate},
            paths.INSTANT_VALIDATE_LEGACY: {"POST": self.legacy_instant},
            paths.SESSION_START: {"POST": self.legacy_start},
            paths.SESSION_TAKEOVER: {"POST": self.legacy_takeover},
            paths.SESSION_HEARTBEAT: {"POST": self.legacy_heartbeat},
            paths.SESSION_END: {"POST": self.legacy_end},
            paths.HEALTH: {"GET": self.health},
            paths.HEALTH_LIVE: {"GET": self.live},
            paths.HEALTH_READY: {"GET": self.ready},
        }

    # -------------------------------------------------------------- plumbing

    def call(self, request: Incoming) -> Call:
        return Call(new_request_id(), self.client_address(request), self.clock.now())

    def client_address(self, request: Incoming) -> str | None:
        if self.settings.trust_forwarded_for:
            forwarded = request.header(b"x-forwarded-for")
            if forwarded:
                return forwarded.split(",", 1)[0].strip()
        return request.client

    @staticmethod
    def parse(model: type[M], request: Incoming) -> M:
        try:
            return model.model_validate_json(request.body)
        except ValidationError as exc:
            raise r.invalid_request(exc) from None

    # ---------------------------------------------------- /validate-unified

    def validate_unified(self, request: Incoming) -> Outgoing:
        started = perf_counter()
        call = self.call(request)
        try:
            req = self.parse(UnifiedRequest, request)
            missing = missing_fields(req)
            if missing:
                raise InvalidRequest(
                    [(f, f"Field required for operation '{req.operation}'") for f in missing]
                )
            body, headers = self._dispatch(req, call)
        except LicensingError as exc:
            return r.unified_error(exc, call.request_id, call.now, paths.VALIDATE_UNIFIED)
        elapsed_ms = round((perf_counter() - started) * 1000, 3)
        state = self.service.breaker.state.value
        return r.unified_success(body, elapsed_ms, state, headers)

    def _dispatch(self, req: UnifiedRequest, call: Call) -> tuple[dict[str, Any], r.Headers]:
        creds, device = req.credentials, req.device
        assert creds.email is not None
        if req.operation == "validate":
            assert creds.token is not None
            v = self.service.validate(
                call, creds.email, creds.token, device.machineFingerprint, device.skipMachineUpdate
            )
            return r.validated(call, v, "standard", device.deviceInfo), r.tier_headers(v)
        if req.operation == "instant":
            assert creds.stripeSessionId is not None
            assert device.machineFingerprint is not None
            v = self.service.instant(
                call, creds.email, creds.stripeSessionId, device.machineFingerprint
            )
            return r.instant(call, v, creds.stripeSessionId, device.deviceInfo), r.tier_headers(v)
        return self._session(req, call), r.SESSION_CACHE

    def _session(self, req: UnifiedRequest, call: Call) -> dict[str, Any]:
        creds, device = req.credentials, req.device
        assert creds.email is not None
        assert creds.token is not None
        assert creds.sessionId is not None
        sid = creds.sessionId
        if req.action in ("start", "takeover"):
            assert device.machineFingerprint is not None
            info = _device_dict(device.deviceInfo)
            granted = self.service.start_session(
                call,
                creds.email,
                creds.token,
                sid,
                device.machineFingerprint,
                info,
                takeover=req.action == "takeover",
            )
            return r.granted(call, granted)
        if req.action == "heartbeat":
            self.service.heartbeat(call, sid, creds.email, creds.token)
            return r.heartbeat(call, sid)
        self.service.end_session(call, sid, creds.email, creds.token)
        return r.ended(call, sid)

    # ------------------------------------------------------- legacy routes

    def legacy_validate(self, request: Incoming) -> Outgoing:
        call = self.call(request)
        try:
            req = self.parse(LegacyValidateRequest, request)
            v = self.service.validate(
                call, req.email, req.token, req.machineFingerprint, req.skipMachineUpdate
            )
        except LicensingError as exc:
            return r.legacy_error(exc, call.now, validation_shape=True)
        return r.legacy_validated(call, v)

    def legacy_instant(self, request: Incoming) -> Outgoing:
        call = self.call(request)
        try:
            req = self.parse(LegacyInstantRequest, request)
            v = self.service.instant(call, req.email, req.stripeSessionId, req.machineFingerprint)
        except LicensingError as exc:
            return r.legacy_error(exc, call.now, validation_shape=True)
        return r.legacy_instant(call, v)

    def legacy_start(self, request: Incoming) -> Outgoing:
        return self._legacy_session_start(request, takeover=False)

    def legacy_takeover(self, request: Incoming) -> Outgoing:
        return self._legacy_session_start(request, takeover=True)

    def _legacy_session_start(self, request: Incoming, *, takeover: bool) -> Outgoing:
        call = self.call(request)
        try:
            req = self.parse(LegacySessionStartRequest, request)
            info = _device_dict(req.deviceInfo)
            g = self.service.start_session(
                call,
                req.email,
                req.token,
                req.sessionId,
                req.machineFingerprint,
                info,
                takeover=takeover,
            )
        except LicensingError as exc:
            return r.legacy_error(exc, call.now, validation_shape=False)
        return r.legacy_session_started(g.session_id)

    def legacy_heartbeat(self, request: Incoming) -> Outgoing:
        return self._legacy_session_op(
            request, self.service.heartbeat, lambda call, sid: r.legacy_heartbeat(call, sid)
        )

    def legacy_end(self, request: Incoming) -> Outgoing:
        return self._legacy_session_op(
            request, self.service.end_session, lambda call, sid: r.legacy_ended(sid)
        )

    def _legacy_session_op(
        self,
        request: Incoming,
        op: Callable[[Call, str], object],
        answer: Callable[[Call, str], Outgoing],
    ) -> Outgoing:
        call = self.call(request)
        try:
            req = self.parse(LegacySessionRequest, request)
            op(call, req.sessionId)
        except LicensingError as exc:
            return r.legacy_error(exc, call.now, validation_shape=False)
        return answer(call, req.sessionId)

    # --------------------------------------------------------------- health

    def _probe_database(self) -> float | None:
        """Milliseconds for SELECT 1, or None when the database fails."""
        started = perf_counter()
        try:
            self.store.ping()
        except StorageUnavailable:
            return None
        return round((perf_counter() - started) * 1000, 3)

    def health(self, request: Incoming) -> Outgoing:
        del request
        now = self.clock.now()
        elapsed = self._probe_database()
        breaker = self.service.breaker
        if elapsed is None:
            status = "unhealthy"
        elif breaker.state is BreakerState.CLOSED:
            status = "healthy"
        else:
            status = "degraded"  # the database answers again; the breaker has yet to close
        body = {
            "timestamp": r.iso(now),
            "status": status,
            "services": {
                "database": {
                    "status": "unhealthy" if elapsed is None else "healthy",
                    "responseTime": elapsed,
                }
            },
            "circuitBreaker": {
                "state": breaker.state.value,
                "failures": breaker.failures,
                "failureCount": breaker.failures,
                "lastFailureTime": r.iso(breaker.last_failure_at),
                "nextAttempt": r.iso(breaker.next_attempt()),
            },
            "system": {
                "worker": "licensing-harness",
                "version": __version__,
                "environment": self.settings.environment,
            },
        }
        if status == "unhealthy":
            retry = str(breaker.retry_after_seconds(now)).encode()
            return r.json_response(body, 503, [r.NO_STORE, (b"retry-after", retry)])
        return r.json_response(body, 200, [r.NO_STORE])

    def live(self, request: Incoming) -> Outgoing:
        del request
        return r.json_response({"status": "ok"}, 200, [r.NO_STORE])

    def ready(self, request: Incoming) -> Outgoing:
        del request
        if self._probe_database() is None:
            body = {"status": "unavailable", "reason": "database unavailable"}
            return r.json_response(body, 503, [r.NO_STORE, (b"retry-after", b"5")])
        return r.json_response({"status": "ok"}, 200, [r.NO_STORE])


def _device_dict(info: DeviceInfo | None) -> dict[str, Any]:
    return info.model_dump() if info is not None else {}
