"""Live invariant checks against a running licensing service.

Each check makes its own licenses (signed checkouts through
:mod:`loadtests.harness.provision`, emails unique to this run, so checks
can run again against the same service), drives the public API, and ends
in one :class:`CheckResult`:

- ``cache_tiers``: the cache hint at every tier boundary, body and header;
- ``heartbeat_expiry``: a session lives exactly 120 s after its last heartbeat;
- ``conflict_takeover``: one alive session per license, takeover kicks;
- ``no_grace``: a failed payment suspends at once, a paid invoice restores at once;
- ``webhook_idempotency``: a duplicate-heavy, shuffled storm applies each event once
  and ends every license (and its emails) where the fake Stripe's oracle says.

Checks run one after the other (two of them move the service's clock),
each bounded in time. A load may run meanwhile: checks never share a
license with it, and they judge time by the service's own answers
(``timestamp``), not by how far they asked the clock to move.
"""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import httpx

from fixtures.stripe import objects
from fixtures.stripe.delivery import DeliveryOptions, plan
from fixtures.stripe.ids import IdFactory
from fixtures.stripe.lifecycle import MONTH, ExpectedLicense, simulate
from fixtures.stripe.sender import Attempt, Sender, SenderOptions
from fixtures.target import target_clock
from licensing_service.contract import ErrorCode, routes
from licensing_service.contract import stripe as contract
from loadtests.harness.model import CheckResult, Outcome
from loadtests.harness.provision import (
    EMAIL_DOMAIN,
    Credential,
    Provisioner,
    json_of,
    plan_licenses,
    provision,
)

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
# The reference service's /__harness__/emails lists at most this many rows,
# oldest first: on a long-lived service a run's emails may be past the end.
OUTBOX_LIMIT = 10_000
STORM_CUSTOMERS = 40
STORM_RATE = 400.0  # deliveries per second
STORM_MONTHS = 6
STORM_DEADLINE_SECONDS = 60.0
ORACLE_EMAIL_TYPES = frozenset({"welcome", "suspension", "reactivation"})


@dataclass(frozen=True, slots=True)
class Tier:
    strategy: str
    seconds: int


# The README's tiers ("How it behaves"), restated: the checks judge the
# service, so they must not borrow its code.
AGGRESSIVE = Tier("aggressive", 3600)
MODERATE = Tier("moderate", 1800)
CONSERVATIVE = Tier("conservative", 900)
MINIMAL = Tier("minimal", 300)
# (seconds since the previous validation, the tier the next one must get):
# each side of both boundaries.
BOUNDARIES: tuple[tuple[int, Tier], ...] = (
    (3599, AGGRESSIVE),
    (3600, MODERATE),
    (86399, MODERATE),
    (86400, CONSERVATIVE),
)
SESSION_ALIVE_SECONDS = 119
SESSION_TTL_SECONDS = 120


class CheckFailed(Exception):
    """The service broke the invariant; the message is the one-line detail."""


class CheckSkipped(Exception):
    """The check cannot be evaluated against this target; the message says why."""


class Inconclusive(Exception):
    """The harness could not tell (the clock moved under it, the budget ran out)."""


# ---------------------------------------------------------------- answers


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


def error_of_body(body: Mapping[str, Any]) -> str | None:
    error = body.get("error")
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) else None


def cache_control(answer: Answer) -> frozenset[str]:
    """Directives of ``Cache-Control``, order and spacing ignored."""
    raw = answer.headers.get("cache-control") or ""
    return frozenset(part.strip().lower() for part in raw.split(",") if part.strip())


def hinted(tier: Tier) -> frozenset[str]:
    return frozenset({"private", f"max-age={tier.seconds}"})


# ----------------------------------------------------------------- target


class Target:
    """The service under test, as the checks talk to it."""

    def __init__(
        self,
        base_url: str,
        secrets: Sequence[str],
        *,
        settle_seconds: float = STAMP_SETTLE_SECONDS,
        budget_seconds: float = CHECK_BUDGET_SECONDS,
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
        return Answer.of(self.provisioner().send_event(event))

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


def invoice_event(
    cred: Credential, *, paid: bool, invoice_id: str, created: int, ids: IdFactory
) -> dict[str, Any]:
    """``invoice.payment_failed`` (first attempt) or ``invoice.paid`` (second
    attempt) of the subscription the checkout created, for the month from ``created``."""
    invoice = objects.invoice(
        id=invoice_id,
        customer=cred.stripe_customer_id,
        customer_email=cred.email,
        customer_name=None,
        subscription=cred.subscription_id,
        subscription_item=ids.new("si"),
        line_id=ids.new("il"),
        status="paid" if paid else "open",
        created=created,
        period_start=created,
        period_end=created + MONTH,
        attempt_count=2 if paid else 1,
        paid_at=created if paid else None,
    )
    kind = contract.INVOICE_PAID if paid else contract.INVOICE_PAYMENT_FAILED
    return objects.event(id=ids.new("evt"), type=kind, created=created, data_object=invoice)


def new_ids() -> IdFactory:
    return IdFactory(random.Random(uuid.uuid4().int))


def expect_delivered(answer: Answer, what: str) -> None:
    if not answer.is_(200) or answer.body.get("idempotent") is not False:
        raise CheckFailed(
            f"the signed {what} answered {answer.describe()}"
            f" (idempotent={answer.body.get('idempotent')!r}), expected 200 with"
            " idempotent false (a first delivery)"
        )


# ------------------------------------------------------------ cache_tiers


def check_cache_tiers(target: Target) -> str:
    target.require(clock=True, secret=True)
    steps: list[str] = []
    cred, latest = _fresh_license_at_aggressive(target, steps)
    for delta, tier in BOUNDARIES:
        target.settle()
        target.advance(delta)
        answer = target.validate(cred)
        require_elapsed(latest, answer, delta)
        expect_tier(answer, tier, f"a validation {delta} s after the previous one")
        steps.append(f"{delta} s later → {tier.seconds}")
        latest = answer
    ids = new_ids()
    created = int(target.sign_clock()()) + 1  # newer than the checkout, days ago by now
    failed = invoice_event(cred, paid=False, invoice_id=ids.new("in"), created=created, ids=ids)
    expect_delivered(target.send_event(failed), "invoice.payment_failed")
    expect_inactive_hint(target.validate(cred))
    steps.append("inactive → 403 with 300")
    return f"{', '.join(steps)}; each in caching.duration and Cache-Control"


def _fresh_license_at_aggressive(target: Target, steps: list[str]) -> tuple[Credential, Answer]:
    """A license validated for the first time, then again at once (→ 3600).

    Its token comes from the welcome email when the outbox shows it: the
    instant validation that otherwise hands it out is itself a validation,
    after which no validation is ever a "first" one."""
    lic = plan_licenses(1, seed=target.seed(), prefix=target.prefix("cache-tiers"))[0]
    provisioner = target.provisioner()
    provisioner.checkout(lic)
    token = welcome_token(target.outbox([lic.email]) or [], lic.email)
    if token is None:
        steps.append(
            "first validation not tested (no welcome email with the token in the outbox;"
            " the token came from an instant validation)"
        )
        cred = lic.with_token(provisioner.instant(lic))
    else:
        cred = lic.with_token(token)
        first = target.validate(cred)
        expect_tier(first, CONSERVATIVE, "the first validation of a new license")
        steps.append(f"first validation → {CONSERVATIVE.seconds}")
    target.settle()
    again = target.validate(cred)
    expect_tier(again, AGGRESSIVE, "a validation right after another")
    steps.append(f"again at once → {AGGRESSIVE.seconds}")
    return cred, again


def welcome_token(outbox: list[dict[str, Any]], email: str) -> str | None:
    for row in outbox:
        payload = row.get("payload")
        if row.get("recipient") == email and isinstance(payload, dict):
            token = payload.get("unlock_token")
            if row.get("email_type") == "welcome" and isinstance(token, str):
                return token
    return None


def expect_tier(answer: Answer, tier: Tier, what: str) -> None:
    if not answer.is_(200):
        raise CheckFailed(
            f"{what} answered {answer.describe()}, expected 200 with the"
            f" {tier.seconds} s {tier.strategy} tier"
        )
    caching = answer.body.get("caching")
    caching = caching if isinstance(caching, dict) else {}
    seen = (caching.get("duration"), caching.get("strategy"))
    header = cache_control(answer)
    if seen != (tier.seconds, tier.strategy) or header != hinted(tier):
        raise CheckFailed(
            f"{what} got caching.duration {seen[0]} ({seen[1]}) and Cache-Control"
            f" {answer.headers.get('cache-control')!r}, expected {tier.seconds} ({tier.strategy})"
            f" and 'private, max-age={tier.seconds}'"
        )


def expect_inactive_hint(answer: Answer) -> None:
    if not answer.is_(403, ErrorCode.SUBSCRIPTION_INACTIVE):
        raise CheckFailed(
            f"validation of a license suspended by invoice.payment_failed answered"
            f" {answer.describe()}, expected 403 SUBSCRIPTION_INACTIVE"
        )
    caching = answer.body.get("caching")
    duration = caching.get("duration") if isinstance(caching, dict) else None
    if duration != MINIMAL.seconds or cache_control(answer) != hinted(MINIMAL):
        raise CheckFailed(
            f"403 SUBSCRIPTION_INACTIVE came with caching.duration {duration} and"
            f" Cache-Control {answer.headers.get('cache-control')!r}, expected 300 and"
            " 'private, max-age=300'"
        )


# ------------------------------------------------------- heartbeat_expiry


def check_heartbeat_expiry(target: Target) -> str:
    target.require(clock=True, secret=True)
    cred = target.licenses("heartbeat-expiry", 1)[0]
    session_id = f"gate-{target.run}-hb"
    latest = target.session(cred, "start", session_id, "a")
    if not latest.is_(200):
        raise CheckFailed(f"session start answered {latest.describe()}, expected 200")
    for n in (1, 2):
        target.advance(SESSION_ALIVE_SECONDS)
        beat = target.session(cred, "heartbeat", session_id)
        require_elapsed(latest, beat, SESSION_ALIVE_SECONDS)
        if not beat.is_(200):
            after = "the start" if n == 1 else "the previous heartbeat (which must refresh it)"
            raise CheckFailed(
                f"heartbeat {SESSION_ALIVE_SECONDS} s after {after} answered {beat.describe()},"
                " expected 200 (alive while the last heartbeat is under 120 s old)"
            )
        latest = beat
    target.advance(SESSION_TTL_SECONDS)
    beat = target.session(cred, "heartbeat", session_id)
    require_elapsed(latest, beat, SESSION_TTL_SECONDS)
    if not beat.is_(404, ErrorCode.SESSION_EXPIRED):
        raise CheckFailed(
            f"heartbeat {SESSION_TTL_SECONDS} s after the last one answered {beat.describe()},"
            " expected 404 SESSION_EXPIRED"
        )
    again = target.session(cred, "heartbeat", session_id)
    if not again.is_(404, ErrorCode.SESSION_EXPIRED):
        raise CheckFailed(
            f"the heartbeat after an expired one answered {again.describe()}, expected 404"
            " SESSION_EXPIRED (a dead session is never revived)"
        )
    restart = target.session(cred, "start", f"{session_id}-2", "a")
    if not restart.is_(200):
        raise CheckFailed(
            f"a new session start after the expiry answered {restart.describe()}, expected 200"
            " (a dead session must not block the license)"
        )
    return (
        "heartbeats at +119 s and +119 s → 200, at +120 s → 404 SESSION_EXPIRED twice,"
        " a new start → 200"
    )


# ------------------------------------------------------ conflict_takeover


def check_conflict_takeover(target: Target) -> str:
    target.require(secret=True)
    cred = target.licenses("conflict-takeover", 1)[0]
    a, b = f"gate-{target.run}-a", f"gate-{target.run}-b"
    _expect(target.session(cred, "start", a, "a"), 200, None, "device A's session start")
    refused = target.session(cred, "start", b, "b")
    if not refused.is_(409, ErrorCode.SESSION_CONFLICT):
        raise CheckFailed(
            f"device B's start while A's session is alive answered {refused.describe()},"
            " expected 409 SESSION_CONFLICT (two sessions would be alive)"
        )
    info = refused.body.get("conflictInfo")
    if not isinstance(info, dict) or not info.get("lastSeen"):
        raise CheckFailed(
            f"409 SESSION_CONFLICT came with conflictInfo {info!r}, expected an object"
            " with deviceInfo and lastSeen"
        )
    _expect(target.session(cred, "heartbeat", a), 200, None, "A's heartbeat after B was refused")
    _expect(target.session(cred, "takeover", b, "b"), 200, None, "device B's takeover")
    _expect(
        target.session(cred, "heartbeat", a),
        409,
        ErrorCode.SESSION_KICKED,
        "A's heartbeat after B's takeover",
    )
    _expect(target.session(cred, "heartbeat", b), 200, None, "B's heartbeat after its takeover")
    _expect(
        target.session(cred, "start", a, "a"),
        409,
        ErrorCode.SESSION_CONFLICT,
        "A's new start while B's session is alive",
    )
    _expect(target.session(cred, "heartbeat", b), 200, None, "B's heartbeat after A was refused")
    return (
        "B's start → 409 SESSION_CONFLICT with conflictInfo, takeover → 200,"
        " A's heartbeat → 409 SESSION_KICKED, A's restart → 409, B alive throughout"
    )


def _expect(answer: Answer, status: int, code: str | None, what: str) -> None:
    if not answer.is_(status, code):
        wanted = f"{status} {code}" if code else str(status)
        raise CheckFailed(f"{what} answered {answer.describe()}, expected {wanted}")


# --------------------------------------------------------------- no_grace


def check_no_grace(target: Target) -> str:
    target.require(secret=True)
    cred = target.licenses("no-grace", 1)[0]
    _expect(target.validate(cred), 200, None, "the first validation of a new license")
    target.settle()
    second = target.validate(cred)
    _expect(second, 200, None, "the second validation of a new license")
    held = _tier_text(second)
    ids = new_ids()
    invoice_id = ids.new("in")
    # Later than the checkout (signed a moment ago), so it is the newest fact.
    failed_at = int(target.sign_clock()()) + 1
    failed = invoice_event(cred, paid=False, invoice_id=invoice_id, created=failed_at, ids=ids)
    expect_delivered(target.send_event(failed), "invoice.payment_failed")
    suspended = target.validate(cred)
    if not suspended.is_(403, ErrorCode.SUBSCRIPTION_INACTIVE):
        raise CheckFailed(
            f"the validation right after a signed invoice.payment_failed answered"
            f" {suspended.describe()} (with {_tier_text(suspended)}), expected 403"
            f" SUBSCRIPTION_INACTIVE (no grace, though the device held {held})"
        )
    paid = invoice_event(cred, paid=True, invoice_id=invoice_id, created=failed_at + 60, ids=ids)
    expect_delivered(target.send_event(paid), "invoice.paid")
    restored = target.validate(cred)
    if not restored.is_(200):
        raise CheckFailed(
            f"the validation right after a signed invoice.paid (attempt 2) answered"
            f" {restored.describe()}, expected 200 (recovery is as immediate as suspension)"
        )
    return (
        f"validated twice (the device held {held}); invoice.payment_failed → next validation 403"
        " SUBSCRIPTION_INACTIVE; invoice.paid → next validation 200"
    )


def _tier_text(answer: Answer) -> str:
    caching = answer.body.get("caching")
    if not isinstance(caching, dict):
        return "no cache tier"
    return f"a {caching.get('duration')} s {caching.get('strategy')} tier"


# ---------------------------------------------------- webhook_idempotency


def check_webhook_idempotency(target: Target) -> str:
    target.require(secret=True)
    seed = target.seed()
    clock = target.sign_clock()
    # Half the simulation behind the service's clock, half ahead: every license
    # the oracle calls active is paid beyond "now", so `instant` must accept it.
    start = datetime.fromtimestamp(int(clock()) - STORM_MONTHS * MONTH // 2, UTC)
    stream = simulate(STORM_CUSTOMERS, STORM_MONTHS, seed, start=start)
    events, oracle = retag(stream.events, stream.oracle, target.run)
    deliveries = plan(events, DeliveryOptions(seed=seed, duplicate_rate=0.5, shuffle="full"))
    options = SenderOptions(
        target.secrets,
        concurrency=8,
        max_attempts=1,  # every genuine delivery must be accepted the first time
        timeout_seconds=REQUEST_TIMEOUT_SECONDS,
        deadline_seconds=max(1.0, min(STORM_DEADLINE_SECONDS, target.remaining())),
        inject_failures=False,
        # Paced: the check runs beside the measured load and must not starve its
        # generator (unpaced, it cost the load's p99 ~150 ms for two seconds).
        rate=STORM_RATE,
    )
    report = Sender(target.base_url + routes.WEBHOOK, options, clock=clock).send(deliveries)
    where = f"(seed {seed}, emails tagged {target.run})"
    if report.timed_out:
        raise CheckFailed(
            f"{len(report.attempts)} of {len(deliveries)} deliveries answered within"
            f" {options.deadline_seconds:g} s, expected all {where}"
        )
    _judge_statuses(report.attempts, len(deliveries), where)
    _judge_applied_once(report.attempts, events, where)
    active = _judge_final_states(target, oracle, where)
    mailed = _judge_emails(target, oracle, where)
    duplicates = len(deliveries) - len(events)
    return (
        f"{len(deliveries)} deliveries ({duplicates} duplicates, shuffled) of {len(events)}"
        f" events all 200, each applied exactly once; {len(oracle)} licenses end as the"
        f" oracle says ({active} active); {mailed} {where}"
    )


def retag(
    events: list[dict[str, Any]], oracle: Mapping[str, ExpectedLicense], tag: str
) -> tuple[list[dict[str, Any]], dict[str, ExpectedLicense]]:
    """The stream with every customer email made unique to this run.

    ``simulate`` draws emails from Faker (``user.N@gmail.com``...): the same
    address can come back in another run with another seed, and a checkout
    for a known email re-links that license instead of creating one. The
    domain becomes a reserved one, so no real inbox is ever written to."""
    renamed = {email: f"{email.partition('@')[0]}.{tag}@{EMAIL_DOMAIN}" for email in oracle}
    new_events = [_renamed(event, renamed) for event in events]
    new_oracle = {renamed[e]: replace(exp, email=renamed[e]) for e, exp in oracle.items()}
    return new_events, new_oracle


def _renamed(value: Any, renamed: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return renamed.get(value, value)
    if isinstance(value, dict):
        return {k: _renamed(v, renamed) for k, v in value.items()}
    if isinstance(value, list):
        return [_renamed(v, renamed) for v in value]
    return value


def _judge_statuses(attempts: Sequence[Attempt], total: int, where: str) -> None:
    refused = Counter(f"{a.status} {a.outcome}" for a in attempts if a.status != 200)
    if refused or len(attempts) != total:
        seen = ", ".join(f"{k} x{n}" for k, n in refused.most_common(4))
        raise CheckFailed(
            f"{sum(refused.values())} of {total} genuine deliveries were not answered 200"
            f" ({seen}), expected every one 200 {where}"
        )


def _judge_applied_once(
    attempts: Sequence[Attempt], events: Sequence[dict[str, Any]], where: str
) -> None:
    # The service answers a duplicate `idempotent: true`, outcome "duplicate"
    # (contract.models.WebhookAck); anything else means it processed the event.
    processed = Counter(a.event_id for a in attempts if a.outcome != "duplicate")
    types = {str(e["id"]): str(e["type"]) for e in events}
    twice = [(eid, n) for eid, n in processed.items() if n > 1]
    never = [eid for eid in types if processed[eid] == 0]
    if twice:
        eid, n = twice[0]
        raise CheckFailed(
            f"{len(twice)} events were processed more than once (e.g. {eid} {types.get(eid)}:"
            f" {n} answers without idempotent:true), expected exactly one per event id {where}"
        )
    if never:
        raise CheckFailed(
            f"{len(never)} events were answered idempotent:true on every delivery (e.g."
            f" {never[0]} {types[never[0]]}), expected one first processing each {where}"
        )


def _judge_final_states(target: Target, oracle: Mapping[str, ExpectedLicense], where: str) -> int:
    wrong = []
    for i, exp in enumerate(oracle.values()):
        fingerprint = f"gate-{target.run}-storm-{i}"
        answer = target.instant(exp.email, exp.checkout_session_id, fingerprint)
        want = (200, None) if exp.status == "active" else (404, ErrorCode.NO_VALID_SUBSCRIPTION)
        if not answer.is_(*want):
            wanted = " ".join(str(w) for w in want if w is not None)
            wrong.append(
                f"{exp.email} ({exp.status} after {', '.join(exp.story)}): instant answered"
                f" {answer.describe()}, expected {wanted}"
            )
    if wrong:
        raise CheckFailed(
            f"{len(wrong)} of {len(oracle)} licenses end in another state than the oracle's,"
            f" e.g. {wrong[0]} {where}"
        )
    return sum(1 for exp in oracle.values() if exp.status == "active")


def _judge_emails(target: Target, oracle: Mapping[str, ExpectedLicense], where: str) -> str:
    outbox = target.outbox(sorted(oracle))
    if outbox is None:
        return (
            f"emails not checked: the target has no {routes.HARNESS_EMAILS} (it needs --test-clock)"
        )
    expected = Counter((email, kind) for email, exp in oracle.items() for kind, _ in exp.emails)
    seen = Counter(
        (str(row.get("recipient")), str(row.get("email_type")))
        for row in outbox
        if row.get("recipient") in oracle and row.get("email_type") in ORACLE_EMAIL_TYPES
    )
    if seen == expected:
        return f"{sum(expected.values())} emails each queued exactly once"
    if len(outbox) >= OUTBOX_LIMIT and not seen - expected:
        # Only missing ones, from a listing cut short: they may be past its end.
        return (
            f"emails not fully checked: {routes.HARNESS_EMAILS} lists only the oldest"
            f" {OUTBOX_LIMIT} rows; {sum(seen.values())} of {sum(expected.values())} expected"
            " emails are among them, none more than once"
        )
    diffs = sorted((expected - seen) + (seen - expected))
    recipient, kind = diffs[0]
    raise CheckFailed(
        f"{len(diffs)} (recipient, email) pairs are queued the wrong number of times, e.g."
        f" {kind} to {recipient}: {seen[(recipient, kind)]} in the outbox, expected"
        f" {expected[(recipient, kind)]} {where}"
    )


# ------------------------------------------------------------------ runner

CHECKS: dict[str, Callable[[Target], str]] = {
    "cache_tiers": check_cache_tiers,
    "heartbeat_expiry": check_heartbeat_expiry,
    "conflict_takeover": check_conflict_takeover,
    "no_grace": check_no_grace,
    "webhook_idempotency": check_webhook_idempotency,
}


def run_checks(
    base_url: str,
    secrets: Sequence[str],
    enabled: Mapping[str, bool],
    *,
    progress: Callable[[str], None] | None = None,
    settle_seconds: float = STAMP_SETTLE_SECONDS,
) -> list[CheckResult]:
    """One result per enabled check, in :data:`CHECKS` order (unknown names
    last, as errors), one after the other. Never raises for a check's sake."""
    names = [n for n in CHECKS if enabled.get(n)]
    names += sorted(n for n, on in enabled.items() if on and n not in CHECKS)
    target = Target(base_url, secrets, settle_seconds=settle_seconds)
    results = []
    try:
        for name in names:
            if progress is not None:
                progress(f"check {name}: running")
            result = run_one(target, name)
            if progress is not None:
                progress(
                    f"check {name}: {result.outcome.value} ({result.seconds:.1f} s) {result.detail}"
                )
            results.append(result)
    finally:
        target.close()
    return results


def run_one(target: Target, name: str) -> CheckResult:
    started = time.monotonic()
    check = CHECKS.get(name)
    try:
        if check is None:
            raise Inconclusive(f"no such check; known: {', '.join(CHECKS)}")
        target.start_budget()
        outcome, detail = Outcome.PASS, check(target)
    except CheckFailed as exc:
        outcome, detail = Outcome.FAIL, str(exc)
    except CheckSkipped as exc:
        outcome, detail = Outcome.SKIP, str(exc)
    except Inconclusive as exc:
        outcome, detail = Outcome.ERROR, f"inconclusive: {exc}"
    except Exception as exc:  # a check must never take the gate down with it
        outcome, detail = Outcome.ERROR, f"{type(exc).__name__}: {exc}"
    seconds = round(time.monotonic() - started, 3)
    return CheckResult(name, outcome, " ".join(detail.split()), seconds)
