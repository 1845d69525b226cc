"""Route paths of the service. Clients, load tests and scenarios import these."""

from __future__ import annotations

from typing import Final

VALIDATE_UNIFIED: Final = "/validate-unified"
VALIDATE_LEGACY: Final = "/validate"
INSTANT_VALIDATE_LEGACY: Final = "/instant-validate"
SESSION_START: Final = "/session/start"
SESSION_HEARTBEAT: Final = "/session/heartbeat"
SESSION_END: Final = "/session/end"
SESSION_TAKEOVER: Final = "/session/takeover"
HEALTH: Final = "/health"
HEALTH_LIVE: Final = "/health/live"
HEALTH_READY: Final = "/health/ready"
METRICS: Final = "/metrics"
OPENAPI: Final = "/openapi.json"

# Present only on a server started with --test-clock.
HARNESS_CLOCK: Final = "/__harness__/clock"
HARNESS_EMAILS: Final = "/__harness__/emails"
# Every injected fault (database, Stripe, email, webhook): see contract.faults.
HARNESS_FAULTS: Final = "/__harness__/faults"

API_VERSION: Final = "2.0"

# Stripe: webhooks in, checkout and billing-portal links out.
WEBHOOK: Final = "/webhook"
CREATE_CHECKOUT_SESSION: Final = "/create-checkout-session"
CREATE_PORTAL_SESSION: Final = "/create-portal-session"
