"""The service under test as the checks talk to it: a client, its answers, and how a check ends.

A check ends by returning a one-line detail (pass) or raising :class:`CheckFailed`
(the service broke the invariant), :class:`CheckSkipped` (this target can't be
judged: no test clock, no webhook secret) or :class:`Inconclusive` (the harness
could not tell: the clock moved under it, the budget ran out).
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from fixtures.target import target_clock
from licensing_service.contract import routes
from loadtests.harness.provision import Credential, Provisioner, json_of, provision

CLOCK_REASON = "needs a service started with --test-clock"
SIGNING_REASON = "needs the target's webhook secret (STRIPE_WEBHOOK_SECRET) to create licenses"
CHECK_BUDGET_SECONDS = 120.0
REQUEST_TIMEOUT_SECONDS = 10.0
# On a served clock (real time plus the harness offset) a little real time
# passes between two requests; more than this and a boundary 1 s wide was
# not really tested.
CLOCK_SLACK_SECONDS = 1.0
# With `serve --workers N` another worker sees a validation stamp up to one
# LH_AUDIT_FLUSH_MS (50 ms) late (README, "Storage and durability"); waiting
# that out measures the tier rule, not the documented flush lag.
STAMP_SETTLE_SECONDS = 0.1
# Between two asks while a change may still be propagating (bound > 0).
PROPAGATION_POLL_SECONDS = 0.005


class CheckFailed(Exception):
    """The service broke the invariant; the message is the one-line detail."""


class CheckSkipped(Exception):
    """The check cannot be evaluated against this target; the message says why."""


class Inconclusive(Exception):
    """The harness could not tell (the clock moved under it, the budget ran out)."""


@dataclass(frozen=True, slots=True)
class Answer:
    """One HTTP answer, reduced to what the checks judge."""

    status: int
    body: dict[str, Any]
    headers: httpx.Headers

    @classmethod
    def of(cls, response: httpx.Response) -> Answer:
        return cls(response.status_code, json_of(response), response.headers)

    @property
    def code(self) -> str | None:
        return error_of_body(self.body)

    @property
    def at(self) -> datetime | None:
        """The service's clock when it answered (the contract's ``timestamp``)."""
        raw = self.body.get("timestamp")
        if not isinstance(raw, str):
            return None
        try:
            return datetime.fromisoformat(raw)
        except ValueError:
            return None

    def is_(self, status: int, code: str | None = None) -> bool:
        return self.status == status and (code is None or self.code == code)

    def describe(self) -> str:
        return f"{self.status} {self.code}" if self.code else str(self.status)


@dataclass(frozen=True, slots=True)
class Seen:
    """The answer a check judges after a change, and when it came."""

    answer: Answer
    shown: bool  # the expected answer (the change showed)
    after_s: float  # since the change was acknowledged, when this answer came
    tries: int
    bound_s: float

    def note(self) -> str:
        """For a pass's detail: empty when judged exactly (bound 0)."""
        if self.bound_s <= 0:
            return ""
        return f" (seen after {_ms(self.after_s)} ms, bound {_ms(self.bound_s)} ms)"

    def late(self) -> str:
        """For a failure's detail: how long the old answer lasted, the bound named."""
        if self.bound_s <= 0:
            return ""
        return (
            f"; still so {_ms(self.after_s)} ms after the change was acknowledged"
            f" ({self.tries} asks; propagation bound {_ms(self.bound_s)} ms)"
        )


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}"


def error_of_body(body: Mapping[str, Any]) -> str | None:
    error = body.get("error")
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) else None


class Target:
    """The service under test, as the checks talk to it."""

    def __init__(
        self,
        base_url: str,
        secrets: Sequence[str],
        *,
        settle_seconds: float = STAMP_SETTLE_SECONDS,
        budget_seconds: float = CHECK_BUDGET_SECONDS,
        propagation_seconds: float = 0.0,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.secrets = [s for s in secrets if s]
        self.run = uuid.uuid4().hex[:8]  # in every email this run creates
        self.settle_seconds = settle_seconds
        self.budget_seconds = budget_seconds
        self.http = httpx.Client(base_url=self.base_url, timeout=REQUEST_TIMEOUT_SECONDS)
        self._deadline = float("inf")
        self._has_clock: bool | None = None
        self._rng = random.SystemRandom()
        self.propagation_seconds = propagation_seconds
        self.monotonic = monotonic
        self.sleep = sleep
        self.acknowledged = monotonic()  # when the latest change was acknowledged

    def close(self) -> None:
        self.http.close()

    def start_budget(self) -> None:
        self._deadline = time.monotonic() + self.budget_seconds

    def remaining(self) -> float:
        return self._deadline - time.monotonic()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        if self.remaining() <= 0:
            raise Inconclusive(f"did not finish within {self.budget_seconds:g} s")
        return self.http.request(method, path, **kwargs)

    # ------------------------------------------------------ what it offers

    def has_clock(self) -> bool:
        if self._has_clock is None:
            self._has_clock = self.request("GET", routes.HARNESS_CLOCK).status_code == 200
        return self._has_clock

    def require(self, *, clock: bool = False, secret: bool = False) -> None:
        missing = []
        if clock and not self.has_clock():
            missing.append(CLOCK_REASON)
        if secret and not self.secrets:
            missing.append(SIGNING_REASON)
        if missing:
            raise CheckSkipped("; ".join(missing))

    def outbox(self, recipients: Sequence[str]) -> list[dict[str, Any]] | None:
        """These recipients' emails in the outbox, or None when the target does not
        list it. (Asking for everything made the service render its whole outbox,
        stalling the load for ~200 ms.)"""
        response = self.request(
            "GET", routes.HARNESS_EMAILS, params=[("recipient", r) for r in recipients]
        )
        if response.status_code != 200:
            return None
        emails = json_of(response).get("emails")
        return [e for e in emails if isinstance(e, dict)] if isinstance(emails, list) else None

    # --------------------------------------------------------------- time

    def advance(self, seconds: float) -> None:
        response = self.request("POST", routes.HARNESS_CLOCK, json={"advance_seconds": seconds})
        if response.status_code != 200:
            raise Inconclusive(
                f"the service refused to move its clock: HTTP {response.status_code}"
            )

    def sign_clock(self) -> Callable[[], float]:
        # Read afresh for each use: checks move the clock between two signatures.
        return target_clock(self.base_url + routes.WEBHOOK)

    def settle(self) -> None:
        if self.settle_seconds > 0:
            time.sleep(self.settle_seconds)

    # ---------------------------------------------------------- licenses

    def seed(self) -> int:
        return self._rng.randrange(2**31)

    def prefix(self, check: str) -> str:
        return f"gate-{self.run}-{check}"

    def licenses(self, check: str, count: int) -> list[Credential]:
        return provision(
            self.base_url, self.secrets, count, seed=self.seed(), prefix=self.prefix(check)
        )

    def provisioner(self) -> Provisioner:
        return Provisioner(self.http, self.secrets, self.sign_clock())

    def send_event(self, event: dict[str, Any]) -> Answer:
        if self.remaining() <= 0:
            raise Inconclusive(f"did not finish within {self.budget_seconds:g} s")
        answer = Answer.of(self.provisioner().send_event(event))
        self.acknowledge()
        return answer

    # ------------------------------------------------------- propagation

    def acknowledge(self) -> None:
        """A change was just acknowledged: propagation is timed from now."""
        self.acknowledged = self.monotonic()

    def until_shown(
        self,
        ask: Callable[[], Answer],
        shows: Callable[[Answer], bool],
        before: Callable[[Answer], bool],
    ) -> Seen:
        """Ask until the answer ``shows`` the latest change, for as long as the
        deployment's propagation bound allows since it was acknowledged.

        Only an answer from ``before`` the change (what a replica not yet told
        would say) is asked again; any other answer returns at once, for the
        check to judge. Bound 0: one ask, judged exactly. Otherwise asks a few
        ms apart until the bound has passed, then once more; never sleeps past
        the bound, and the number of asks is capped."""
        bound = self.propagation_seconds
        deadline = self.acknowledged + bound
        most = 2 + int(bound / PROPAGATION_POLL_SECONDS)  # bounded even if the clock stalls
        tries = 0
        while True:
            answer = ask()
            tries += 1
            after = self.monotonic() - self.acknowledged
            shown = shows(answer)
            left = deadline - self.monotonic()
            if shown or not before(answer) or left <= 0 or tries >= most:
                return Seen(answer, shown, after, tries, bound)
            self.sleep(min(PROPAGATION_POLL_SECONDS, left))

    # ------------------------------------------------------------ the API

    def validate(self, cred: Credential) -> Answer:
        body = {"operation": "validate", "credentials": {"email": cred.email, "token": cred.token}}
        return Answer.of(self.request("POST", routes.VALIDATE_UNIFIED, json=body))

    def instant(self, email: str, stripe_session_id: str, fingerprint: str) -> Answer:
        body = {
            "operation": "instant",
            "credentials": {"email": email, "stripeSessionId": stripe_session_id},
            "device": {"machineFingerprint": fingerprint},
        }
        return Answer.of(self.request("POST", routes.VALIDATE_UNIFIED, json=body))

    def session(
        self, cred: Credential, action: str, session_id: str, device: str | None = None
    ) -> Answer:
        body: dict[str, Any] = {
            "operation": "session",
            "action": action,
            "credentials": {"email": cred.email, "token": cred.token, "sessionId": session_id},
        }
        if device is not None:
            body["device"] = {
                "machineFingerprint": f"{cred.fingerprint}-{device}",
                "deviceInfo": {"hostname": f"gate-device-{device}"},
            }
        return Answer.of(self.request("POST", routes.VALIDATE_UNIFIED, json=body))


def require_elapsed(before: Answer, after: Answer, asked: float) -> None:
    """The service's clock moved ``asked`` seconds (plus a little real time)
    between two answers; otherwise the step tested nothing."""
    if before.at is None or after.at is None:
        raise Inconclusive("an answer carried no `timestamp`: cannot tell how much time passed")
    elapsed = (after.at - before.at).total_seconds()
    if not asked <= elapsed < asked + CLOCK_SLACK_SECONDS:
        raise Inconclusive(
            f"{elapsed:.3f} s passed on the service's clock where {asked:g} s were asked for"
            " (something else moved /__harness__/clock, or answers took over"
            f" {CLOCK_SLACK_SECONDS:g} s): the boundary was not tested"
        )


def expect(answer: Answer, status: int, code: str | None, what: str) -> None:
    """``what`` answered ``status`` (with error ``code``, if given); else the check fails."""
    if not answer.is_(status, code):
        wanted = f"{status} {code}" if code else str(status)
        raise CheckFailed(f"{what} answered {answer.describe()}, expected {wanted}")
