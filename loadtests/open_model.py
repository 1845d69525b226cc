"""An open model: validations arriving at a fixed rate, whatever the answers' speed.

Closed-loop users wait for an answer before asking again, so a slow service
is offered less load and looks better than it is. Here each user starts
iterations at ``LH_OPEN_RATE / users`` per second (k6's constant arrival
rate): a slow answer does not delay the next arrival. Iterations that start
late, or cannot start because every in-flight slot is busy (dropped), are
counted; latency is recorded both as service time and from the intended
start (coordinated omission corrected).

    LH_OPEN_RATE=200 LH_OPEN_SECONDS=60 LH_LOAD_CREDENTIALS=... \\
        locust -f loadtests/open_model.py --host URL -u 10 -r 10 -t 60s
"""

from __future__ import annotations

from locust import FastHttpUser, constant, task

from licensing_service.contract import routes
from loadtests import common
from loadtests.harness.pacing import arrival_rate_task
from loadtests.validation_fleet import VALIDATION_SHARE, judge_validation, validation_body

NAME = "validate open"
MAX_IN_FLIGHT = 50  # per user; also the user's connection pool


class ArrivingValidations(FastHttpUser):
    wait_time = constant(0)
    concurrency = MAX_IN_FLIGHT

    def on_start(self) -> None:
        self.license = common.licenses().take("validation", VALIDATION_SHARE)
        users = max(1, int(common.env_float("LH_LOAD_USERS", 10)))
        self.rate = common.env_float("LH_OPEN_RATE", 200.0) / users
        self.seconds = common.env_float("LH_OPEN_SECONDS", 60.0)

    @task
    def arrive(self) -> None:
        arrival_rate_task(self, self.rate, MAX_IN_FLIGHT, self.validate, self.seconds, name=NAME)
        self.stop()  # one paced run per user; the run time bounds it anyway

    def validate(self) -> None:
        with self.client.post(
            routes.VALIDATE_UNIFIED,
            json=validation_body(self.license),
            name=NAME,
            catch_response=True,
        ) as response:
            problem, _ = judge_validation(response)
            if problem:
                response.failure(problem)
            else:
                response.success()
