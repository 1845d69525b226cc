"""A deployment's traffic in one run: mostly tills validating, some holding
device sessions, and Stripe's webhooks (weights 70 : 20 : 10 users).

    LH_LOAD_CREDENTIALS=... LH_LOAD_STREAM=... LH_WEBHOOK_SECRET=... \\
        locust -f loadtests/mixed_fleet.py --host URL
"""

from __future__ import annotations

from loadtests.session_fleet import SessionDevice
from loadtests.shapes import shape_from_env
from loadtests.validation_fleet import ValidationDevice
from loadtests.webhook_storm import StripeWebhooks

__all__ = ["SessionDevice", "Shape", "StripeWebhooks", "ValidationDevice"]

Shape = shape_from_env()
