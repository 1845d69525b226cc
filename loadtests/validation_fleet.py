"""A fleet of POS tills validating their license.

Each till validates, reads the cache hint it gets back (``Cache-Control:
max-age``) and waits that long (scaled by ``LH_LOAD_CACHE_SCALE``) before it
validates again, as a till does. ``LH_LOAD_BURST=1`` makes every till ignore
the hint: the thundering herd after an outage.

    LH_LOAD_CREDENTIALS=creds.jsonl locust -f loadtests/validation_fleet.py --host URL
"""

from __future__ import annotations

import random
from typing import Any

from locust import FastHttpUser, task

from licensing_service.contract import routes
from loadtests import common
from loadtests.shapes import shape_from_env

VALIDATION_SHARE = (0.0, 0.7)  # the first 70% of the licenses; sessions use the rest


class ValidationDevice(FastHttpUser):
    abstract = False
    weight = 70

    def on_start(self) -> None:
        self.license = common.licenses().take("validation", VALIDATION_SHARE)
        self.scale = common.env_float("LH_LOAD_CACHE_SCALE", 0.00005)
        self.burst = common.env_float("LH_LOAD_BURST", 0.0) > 0
        self.pause = 0.0

    def wait_time(self) -> float:
        # Honour the hint, with jitter so the fleet does not march in step.
        return self.pause * random.uniform(0.8, 1.2)

    @task
    def validate(self) -> None:
        body = validation_body(self.license)
        name = "validate burst" if self.burst else "validate"
        with self.client.post(
            routes.VALIDATE_UNIFIED, json=body, name=name, catch_response=True
        ) as response:
            problem, seconds = judge_validation(response)
            if problem:
                response.failure(problem)
            else:
                response.success()
        self.pause = 0.0 if self.burst else seconds * self.scale


def validation_body(lic: common.License) -> dict[str, Any]:
    return {
        "operation": "validate",
        "credentials": {"email": lic.email, "token": lic.token},
        "device": {"machineFingerprint": lic.fingerprint},
    }


def judge_validation(response: Any) -> tuple[str | None, int]:
    """A wrong body with the right status is a failure: an active license must
    be answered ``valid: true`` with a cache hint that matches its header."""
    if response.status_code != 200:
        return f"status {response.status_code}", 300
    data = common.body_of(response)
    if data is None:
        return "body is not a JSON object", 300
    validation = data.get("validation") or {}
    if data.get("success") is not True or validation.get("valid") is not True:
        return "an active license was not answered valid: true", 300
    header = common.max_age(response)
    duration = (data.get("caching") or {}).get("duration")
    if header is None or header != duration:
        return f"cache hint mismatch: header max-age={header}, body duration={duration}", 300
    if header not in (900, 1800, 3600):
        return f"cache hint {header} s is not a tier of an active license", 300
    return None, header


Shape = shape_from_env()
