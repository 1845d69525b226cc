"""The one module that knows the service's fault route (``/__harness__/faults``,
:mod:`licensing_service.contract.faults`): switch faults, read them back."""

from __future__ import annotations

import httpx

from licensing_service.contract import routes
from licensing_service.contract.faults import FaultsRequest, FaultsView
from scenarios.steps import StepFailed


class FaultControl:
    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def available(self) -> str | None:
        """None when faults can be injected, else why not."""
        try:
            response = self.client.get(routes.HARNESS_FAULTS)
        except httpx.HTTPError as exc:
            return f"cannot reach the target ({type(exc).__name__})"
        if response.status_code == 200:
            return None
        return f"the target has no {routes.HARNESS_FAULTS} (not started with --test-clock?)"

    def apply(self, request: FaultsRequest) -> list[str]:
        """Switch the faults ``request`` names; the active ones by name afterwards."""
        body = request.model_dump(exclude_none=True)
        try:
            response = self.client.post(routes.HARNESS_FAULTS, json=body)
        except httpx.HTTPError as exc:
            raise StepFailed(f"POST {routes.HARNESS_FAULTS}: {type(exc).__name__}: {exc}") from exc
        if response.status_code != 200:
            raise StepFailed(
                f"POST {routes.HARNESS_FAULTS} answered {response.status_code}:"
                f" {response.text[:200]}"
            )
        return list(FaultsView.model_validate(response.json()).active)

    def clear(self) -> list[str]:
        return self.apply(FaultsRequest(clear=True))


__all__ = ["FaultControl"]
