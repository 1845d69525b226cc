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
from licensing_service.api import responses as r
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
from licensing_service.service.licensing import (
    Call,
    LicensingService,
    SessionGranted,
    Validated,
    iso,
    subscription_info,
)
from licensing_service.service.ports import Clock, Store

M = TypeVar("M", bound=BaseModel)

SESSION_CACHE = r.cache_headers(300, "none")


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

    @staticmethod
    def performance(started: float, service: LicensingService) -> dict[str, Any]:
        return {
            "responseTime": round((perf_counter() - started) * 1000, 3),
            "circuitBreakerState": service.breaker.state.value,
        }

    def envelope(self, call: Call, operation: str, **parts: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "success": True,
            "timestamp": call.now,
            "requestId": call.request_id,
            "degraded": parts.pop("degraded", False),
        }
        body.update(parts)
        body["metadata"] = {
            "apiVersion": paths.API_VERSION,
            "operation": operation,
            "endpoint": paths.VALIDATE_UNIFIED,
        }
        return body

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
        body["performance"] = self.performance(started, self.service)
        return r.json_response(body, 200, headers)

    def _dispatch(self, req: UnifiedRequest, call: Call) -> tuple[dict[str, Any], r.Headers]:
        creds, device = req.credentials, req.device
        assert creds.email is not None
        if req.operation == "validate":
            assert creds.token is not None
            v = self.service.validate(
                call, creds.email, creds.token, device.machineFingerprint, device.skipMachineUpdate
            )
            return self._validated(call, v, "standard", device.deviceInfo), r.cache_headers(
                v.tier.seconds, v.tier.strategy
            )
        if req.operation == "instant":
            assert creds.stripeSessionId is not None
            assert device.machineFingerprint is not None
            v = self.service.instant(
                call, creds.email, creds.stripeSessionId, device.machineFingerprint
            )
            body = self._validated(call, v, "instant", device.deviceInfo)
            body["subscription"]["unlockToken"] = v.customer.unlock_token
            body["session"]["sessionId"] = creds.stripeSessionId
            return body, r.cache_headers(v.tier.seconds, v.tier.strategy)
        return self._session(req, call), SESSION_CACHE

    def _validated(self, call: Call, v: Validated, kind: str, device_info: Any) -> dict[str, Any]:
        customer = v.customer
        session: dict[str, Any] = {
            "allowed": True,
            "sessionId": None,
            "machineChanged": v.machine_changed,
        }
        if v.fingerprint_processed:
            session["deviceInfo"] = _device_view(device_info, call)
        return self.envelope(
            call,
            "validate" if kind == "standard" else kind,
            degraded=v.degraded,
            validation={
                "valid": True,
                "status": v.standing.reported_status,
                "validationType": kind,
                "customer": {
                    "id": customer.id,
                    "email": customer.email,
                    "name": r.display_name(customer.name, customer.email),
                },
            },
            subscription=r.subscription_view(v, call.now),
            session=session,
            caching=r.caching(v.tier, call.now),
        )

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
            return self._granted(call, granted)
        if req.action == "heartbeat":
            self.service.heartbeat(call, sid, creds.email, creds.token)
            view = {
                "allowed": True,
                "sessionId": sid,
                "status": "active",
                "lastHeartbeat": iso(call.now),
            }
            return self.envelope(call, "session", session=view)
        self.service.end_session(call, sid, creds.email, creds.token)
        view = {"allowed": False, "sessionId": sid, "status": "ended", "endedAt": iso(call.now)}
        return self.envelope(call, "session", session=view)

    def _granted(self, call: Call, g: SessionGranted) -> dict[str, Any]:
        session: dict[str, Any] = {
            "allowed": True,
            "sessionId": g.session_id,
            "status": "active",
            "deviceInfo": _device_view(g.device_info, call),
        }
        if g.takeover:
            session["takeover"] = True
        kind = "session_takeover" if g.takeover else "session_start"
        return self.envelope(
            call,
            "session",
            validation={"valid": True, "status": "active", "validationType": kind},
            session=session,
        )

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
        body = self._legacy_valid(call, v)
        body["machineChanged"] = v.machine_changed
        return self._legacy_validation_response(call, v, body)

    def legacy_instant(self, request: Incoming) -> Outgoing:
        call = self.call(request)
        try:
            req = self.parse(LegacyInstantRequest, request)
            v = self.service.instant(call, req.email, req.stripeSessionId, req.machineFingerprint)
        except LicensingError as exc:
            return r.legacy_error(exc, call.now, validation_shape=True)
        body = self._legacy_valid(call, v)
        body["unlockToken"] = v.customer.unlock_token
        return self._legacy_validation_response(call, v, body)

    def _legacy_valid(self, call: Call, v: Validated) -> dict[str, Any]:
        return {
            "valid": True,
            "customerName": r.display_name(v.customer.name, v.customer.email),
            "customerId": v.customer.id,
            "subscriptionInfo": subscription_info(v.customer, call.now),
            "degraded": v.degraded,
        }

    @staticmethod
    def _legacy_validation_response(call: Call, v: Validated, body: dict[str, Any]) -> Outgoing:
        body["validatedAt"] = iso(call.now)
        body["cacheUntil"] = iso(v.tier.valid_until(call.now))
        headers = r.cache_headers(v.tier.seconds, v.tier.strategy)
        headers.append((b"x-cache-duration", str(v.tier.seconds).encode()))
        return r.json_response(body, 200, headers)

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
        return r.json_response({"success": True, "sessionId": g.session_id}, 200, SESSION_CACHE)

    def legacy_heartbeat(self, request: Incoming) -> Outgoing:
        return self._legacy_session_op(request, self.service.heartbeat, "timestamp")

    def legacy_end(self, request: Incoming) -> Outgoing:
        return self._legacy_session_op(request, self.service.end_session, "emailSent")

    def _legacy_session_op(
        self, request: Incoming, op: Callable[[Call, str], object], extra: str
    ) -> Outgoing:
        call = self.call(request)
        try:
            req = self.parse(LegacySessionRequest, request)
            op(call, req.sessionId)
        except LicensingError as exc:
            return r.legacy_error(exc, call.now, validation_shape=False)
        body: dict[str, Any] = {"success": True, "sessionId": req.sessionId}
        # The disconnection email of POSPal's end route is not sent (sendEmail is accepted).
        body[extra] = iso(call.now) if extra == "timestamp" else False
        return r.json_response(body, 200, SESSION_CACHE)

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
            "timestamp": iso(now),
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
                "lastFailureTime": iso(breaker.last_failure_at),
                "nextAttempt": iso(breaker.next_attempt()),
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


def _device_view(device_info: Any, call: Call) -> dict[str, str]:
    if isinstance(device_info, BaseModel):
        device_info = device_info.model_dump()
    hostname = device_info.get("hostname") if isinstance(device_info, dict) else None
    return {"current": hostname or "Unknown Device", "registered": iso(call.now) or ""}
