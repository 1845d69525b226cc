"""The one module that knows the service's fault route (``/__harness__/faults``,
:mod:`licensing_service.contract.faults`): switch faults, read them back.

A service from before that route (only ``/__harness__/db-fault``) still takes the
database's errors, so rehearsals of a database outage run on it; any other fault
is refused there, naming the route that is missing.
"""

from __future__ import annotations

import httpx

from licensing_service.contract import routes
from licensing_service.contract.faults import FaultsRequest, FaultsView
from scenarios.steps import StepFailed


class FaultControl:
    def __init__(self, client: httpx.Client) -> None:
        self.client = client
        self._legacy: bool | None = None  # None: not asked yet

    def available(self) -> str | None:
        """None when faults can be injected, else why not."""
        try:
            if self.client.get(routes.HARNESS_FAULTS).status_code == 200:
                self._legacy = False
                return None
            if self.client.get(routes.HARNESS_DB_FAULT).status_code == 200:
                self._legacy = True
                return None
        except httpx.HTTPError as exc:
            return f"cannot reach the target ({type(exc).__name__})"
        return f"the target has no {routes.HARNESS_FAULTS} (not started with --test-clock?)"

    def apply(self, request: FaultsRequest) -> list[str]:
        """Switch the faults ``request`` names; the active ones by name afterwards."""
        if self._legacy is None:
            reason = self.available()
            if reason:
                raise StepFailed(reason)
        if self._legacy:
            return self._apply_legacy(request)
        body = request.model_dump(exclude_none=True)
        response = self._post(routes.HARNESS_FAULTS, body)
        return list(FaultsView.model_validate(response.json()).active)

    def clear(self) -> list[str]:
        return self.apply(FaultsRequest(clear=True))

    def _apply_legacy(self, request: FaultsRequest) -> list[str]:
        others = [n for n in ("stripe", "email", "webhook") if getattr(request, n) is not None]
        db = request.db
        if others or (db is not None and (db.latency_ms or db.lock)):
            raise StepFailed(
                f"the target has only {routes.HARNESS_DB_FAULT} (database errors);"
                f" {routes.HARNESS_FAULTS} is needed for this fault"
            )
        if request.clear or db is not None:
            failing = bool(db is not None and db.errors)
            self._post(routes.HARNESS_DB_FAULT, {"failing": failing})
        failing_now = self.client.get(routes.HARNESS_DB_FAULT).json().get("failing") is True
        return ["db.errors"] if failing_now else []

    def _post(self, path: str, body: dict[str, object]) -> httpx.Response:
        try:
            response = self.client.post(path, json=body)
        except httpx.HTTPError as exc:
            raise StepFailed(f"POST {path}: {type(exc).__name__}: {exc}") from exc
        if response.status_code != 200:
            raise StepFailed(f"POST {path} answered {response.status_code}: {response.text[:200]}")
        return response


__all__ = ["FaultControl"]
