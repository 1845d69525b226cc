"""The service's public contract: routes, bodies, error codes.

``loadtests/``, ``scenarios/`` and ``fixtures/`` import from here and only
from here, never from the service's internals.
"""

from licensing_service.contract import faults, models, routes, stripe
from licensing_service.contract.errors import ERROR_SPECS, ErrorCode, ErrorSpec
from licensing_service.contract.spec import ROUTES, RouteSpec, routes_for

__all__ = [
    "ERROR_SPECS",
    "ROUTES",
    "ErrorCode",
    "ErrorSpec",
    "RouteSpec",
    "faults",
    "models",
    "routes",
    "routes_for",
    "stripe",
]
