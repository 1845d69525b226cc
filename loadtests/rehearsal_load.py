"""A closed-loop load that records every answer, for the outage rehearsals to judge.

Locust aggregates: it can tell how many requests failed, not which license got
which answer. A rehearsal must know that a license suspended before the outage
was never answered valid, so this generator keeps one :class:`Answer` per
request: when, which operation and license, the status and code, ``valid``,
``degraded``, the cache tier, ``Retry-After``, the latency, or the client-side
failure (a timeout, a refused connection).

asyncio and httpx, on a thread of its own with its own event loop, so a
synchronous runner can start it, go on with its steps and stop it. Every loop is
bounded: it ends at :meth:`RehearsalLoad.stop` or after ``max_seconds``,
whichever comes first. Loopback targets only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx

from fixtures.stripe import objects
from fixtures.target import is_loopback
from licensing_service.contract import routes
from licensing_service.contract import stripe as contract
from loadtests.harness.provision import checkout_event, plan_licenses

# What each operation is, as a rehearsal judges it. "write": commits before it
# answers (a session action), so it must fail fast while the database is out.
# "signup": a signed checkout.session.completed for a new customer (a new license
# and its welcome email: what makes the outbox grow).
OPERATIONS = ("validate", "suspended", "session", "webhook", "signup", "checkout", "portal")
WRITES = frozenset({"session"})
LicenseState = Literal["active", "suspended"]


@dataclass(frozen=True, slots=True)
class LoadLicense:
    """A license the load drives, and what the service must say about it."""

    email: str
    token: str
    fingerprint: str
    state: LicenseState
    stripe_customer_id: str = ""
    subscription_id: str = ""


@dataclass(frozen=True, slots=True)
class LoadPlan:
    users: int
    think_s: float  # each user's pause between two requests
    timeout_s: float  # per request; past it the answer is recorded as a timeout
    mix: Mapping[str, float]  # operation -> weight
    licenses: Sequence[LoadLicense]
    max_seconds: float  # the loop ends by itself after this, stopped or not
    webhook_secrets: Sequence[str] = ()
    seed: int = 1


@dataclass(frozen=True, slots=True)
class Answer:
    """One request and what came back. ``t`` is seconds since the load's epoch
    (the runner's monotonic origin), at the moment the request was sent."""

    t: float
    op: str
    license: str  # the license's email ("" for operations without one)
    expected: str  # "active", "suspended" or "" (no validity to judge)
    latency_ms: float
    status: int | None = None  # None: no HTTP answer (see ``failure``)
    code: str | None = None
    valid: bool | None = None
    degraded: bool | None = None
    retry_after: str | None = None
    tier_s: int | None = None
    server_time: str | None = None
    action: str = ""  # session: start, heartbeat, end, takeover
    failure: str | None = None  # "timeout", "connect", or the exception's type

    @property
    def answered(self) -> bool:
        """A definite answer: 2xx, or a 4xx that judges the license (not a 5xx or nothing)."""
        return self.status is not None and self.status < 500

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}

    @classmethod
    def from_dict(cls, row: Mapping[str, Any]) -> Answer:
        return cls(**row)


@dataclass(slots=True)
class _SessionState:
    license: LoadLicense
    session_id: str = ""
    alive: bool = False
    take_over: bool = False  # the last start met another session of this license


@dataclass(slots=True)
class _Pools:
    active: list[LoadLicense] = field(default_factory=list)
    suspended: list[LoadLicense] = field(default_factory=list)
    sessions: list[LoadLicense] = field(default_factory=list)


def split_pools(licenses: Sequence[LoadLicense], users: int) -> _Pools:
    """Suspended licenses apart; of the active ones, one per user holds that
    user's session (two users on one license would only measure conflicts)."""
    pools = _Pools()
    active = [lic for lic in licenses if lic.state == "active"]
    pools.suspended = [lic for lic in licenses if lic.state == "suspended"]
    held = min(users, max(0, len(active) - 1))
    pools.sessions = active[:held]
    pools.active = active[held:] or active
    return pools


class RehearsalLoad:
    """Start it, read :meth:`answers` while it runs, stop it (or let it end)."""

    def __init__(self, base_url: str, plan: LoadPlan, clock: Callable[[], float]) -> None:
        host = urlsplit(base_url).hostname or ""
        if not is_loopback(host):
            raise ValueError(f"rehearsal load goes to loopback only, not {host!r}")
        if plan.users < 1:
            raise ValueError("a load needs at least one user")
        self.base_url = base_url.rstrip("/")
        self.plan = plan
        self.clock = clock  # seconds on the runner's monotonic origin
        self._answers: list[Answer] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pools = split_pools(plan.licenses, plan.users)
        self._sign_offset = 0.0  # the target's unix time minus ours, for webhooks
        # While the target's clock moves, no webhook is signed or in flight: one
        # signed on the old time and answered on the new is refused (400, the
        # signature's timestamp out of tolerance) through no fault of the target.
        self._signing = threading.Condition()
        self._signing_held = False
        self._webhooks_in_flight = 0

    # ------------------------------------------------------------------ control

    def start(self, sign_offset: float = 0.0) -> None:
        if self._thread is not None:
            raise RuntimeError("the load is already running")
        self._sign_offset = sign_offset
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="rehearsal-load", daemon=True)
        self._thread.start()

    def set_sign_offset(self, offset: float) -> None:
        """The target's clock moved: sign webhooks on its new time."""
        self._sign_offset = offset

    @contextlib.contextmanager
    def webhooks_held(self) -> Iterator[None]:
        """Hold new webhooks and wait (at most one request timeout) for those in
        flight; move the target's clock and call :meth:`set_sign_offset` inside."""
        with self._signing:
            self._signing_held = True
            self._signing.wait_for(
                lambda: self._webhooks_in_flight == 0, timeout=self.plan.timeout_s + 1
            )
        try:
            yield
        finally:
            with self._signing:
                self._signing_held = False

    def stop(self, timeout: float | None = None) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout if timeout is not None else self.plan.timeout_s + 5)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def answers(self) -> list[Answer]:
        with self._lock:
            return list(self._answers)

    def _record(self, answer: Answer) -> None:
        with self._lock:
            self._answers.append(answer)

    # ------------------------------------------------------------------ the loop

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        plan = self.plan
        limits = httpx.Limits(max_connections=plan.users, max_keepalive_connections=plan.users)
        timeout = httpx.Timeout(plan.timeout_s)
        deadline = time.monotonic() + plan.max_seconds
        async with httpx.AsyncClient(
            base_url=self.base_url, timeout=timeout, limits=limits
        ) as client:
            users = [
                asyncio.create_task(self._user(client, n, deadline)) for n in range(plan.users)
            ]
            await asyncio.gather(*users)

    async def _user(self, client: httpx.AsyncClient, n: int, deadline: float) -> None:
        rng = random.Random(f"{self.plan.seed}:{n}")
        ops, weights = self._weighted_ops()
        session = (
            _SessionState(self._pools.sessions[n % len(self._pools.sessions)])
            if self._pools.sessions and n < len(self._pools.sessions)
            else None
        )
        await asyncio.sleep(rng.uniform(0, self.plan.think_s))  # no thundering start
        while not self._stop.is_set() and time.monotonic() < deadline:
            op = rng.choices(ops, weights)[0]
            if op == "session" and session is None:
                op = "validate"
            await self._one(client, op, rng, session)
            if self.plan.think_s > 0:
                await asyncio.sleep(self.plan.think_s)

    def _weighted_ops(self) -> tuple[list[str], list[float]]:
        ops = [op for op, w in self.plan.mix.items() if w > 0 and self._possible(op)]
        if not ops:
            ops = ["validate"]
            return ops, [1.0]
        return ops, [self.plan.mix[op] for op in ops]

    def _possible(self, op: str) -> bool:
        if op == "suspended":
            return bool(self._pools.suspended)
        if op in ("webhook", "signup"):
            return bool(self.plan.webhook_secrets)
        return True

    async def _one(
        self, client: httpx.AsyncClient, op: str, rng: random.Random, session: _SessionState | None
    ) -> None:
        if op == "session" and session is not None:
            lic = session.license
            action = _next_action(session)
            body = _session_body(lic, session, action)
            answer = await self._send(client, op, lic, routes.VALIDATE_UNIFIED, body, action)
            _follow_session(session, answer)
            return
        if op == "webhook":
            lic = rng.choice(self._pools.active)
            await self._send_webhook(client, lic)
            return
        if op == "signup":
            await self._send_signup(client, rng)
            return
        if op == "checkout":
            lic = rng.choice(self._pools.active)
            body = {"email": lic.email}
            await self._send(client, op, lic, routes.CREATE_CHECKOUT_SESSION, body, "")
            return
        if op == "portal":
            lic = rng.choice(self._pools.active)
            body = {"email": lic.email, "unlockToken": lic.token}
            await self._send(client, op, lic, routes.CREATE_PORTAL_SESSION, body, "")
            return
        pool = self._pools.suspended if op == "suspended" else self._pools.active
        lic = rng.choice(pool)
        await self._send(client, op, lic, routes.VALIDATE_UNIFIED, _validate_body(lic), "")

    async def _send_signup(self, client: httpx.AsyncClient, rng: random.Random) -> None:
        planned = plan_licenses(1, seed=rng.randrange(1 << 40), prefix="rehearse-signup")[0]
        now = int(time.time() + self._sign_offset)
        lic = LoadLicense(planned.email, "", planned.fingerprint, "active")
        await self._send_event(client, "signup", lic, checkout_event(planned, now))

    async def _send_webhook(self, client: httpx.AsyncClient, lic: LoadLicense) -> None:
        # A ping-like event every service must acknowledge and none acts on: the
        # load's webhooks must not change the licenses the rehearsal judges.
        now = int(time.time() + self._sign_offset)
        event = objects.event(
            id=f"evt_rh{uuid.uuid4().hex[:20]}",
            type="customer.updated",
            created=now,
            data_object={"id": lic.stripe_customer_id or "cus_unknown", "object": "customer"},
        )
        await self._send_event(client, "webhook", lic, event)

    async def _send_event(
        self,
        client: httpx.AsyncClient,
        op: str,
        lic: LoadLicense,
        event: dict[str, Any],
    ) -> None:
        while True:
            with self._signing:
                if not self._signing_held:
                    self._webhooks_in_flight += 1
                    break
            await asyncio.sleep(0.005)  # the clock is moving: a few ms at most
        try:
            # Signed now, on the offset of this moment (the event's own `created`
            # may be older: the clock moved while it waited).
            now = int(time.time() + self._sign_offset)
            raw = json.dumps(event, separators=(",", ":")).encode()
            header = contract.signature_header(raw, list(self.plan.webhook_secrets), now)
            headers = {"content-type": "application/json", contract.SIGNATURE_HEADER: header}
            await self._send(client, op, lic, routes.WEBHOOK, None, "", raw, headers)
        finally:
            with self._signing:
                self._webhooks_in_flight -= 1
                self._signing.notify_all()

    async def _send(
        self,
        client: httpx.AsyncClient,
        op: str,
        lic: LoadLicense,
        path: str,
        body: dict[str, Any] | None,
        action: str,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        expected = lic.state if op in ("validate", "suspended") else ""
        sent = self.clock()
        started = time.perf_counter()
        failure: str | None = None
        response: httpx.Response | None = None
        try:
            if raw is not None:
                response = await client.post(path, content=raw, headers=headers)
            else:
                response = await client.post(path, json=body)
        except httpx.TimeoutException:
            failure = "timeout"
        except httpx.ConnectError:
            failure = "connect"
        except httpx.HTTPError as exc:
            failure = type(exc).__name__
        latency = (time.perf_counter() - started) * 1000
        answer = _answer_of(response, op, lic.email, expected, sent, latency, action, failure)
        self._record(answer)
        return answer


def _answer_of(
    response: httpx.Response | None,
    op: str,
    email: str,
    expected: str,
    sent: float,
    latency_ms: float,
    action: str,
    failure: str | None,
) -> Answer:
    if response is None:
        return Answer(sent, op, email, expected, latency_ms, action=action, failure=failure)
    body = _json(response)
    validation = body.get("validation")
    caching = body.get("caching")
    error = body.get("error")
    valid = validation.get("valid") if isinstance(validation, dict) else None
    tier = caching.get("duration") if isinstance(caching, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    degraded = body.get("degraded")
    return Answer(
        t=sent,
        op=op,
        license=email,
        expected=expected,
        latency_ms=latency_ms,
        status=response.status_code,
        code=code if isinstance(code, str) else None,
        valid=valid if isinstance(valid, bool) else None,
        degraded=degraded if isinstance(degraded, bool) else None,
        retry_after=response.headers.get("retry-after"),
        tier_s=tier if isinstance(tier, int) else None,
        server_time=body.get("timestamp") if isinstance(body.get("timestamp"), str) else None,
        action=action,
        failure=None,
    )


def _json(response: httpx.Response) -> dict[str, Any]:
    with contextlib.suppress(ValueError):
        body = response.json()
        if isinstance(body, dict):
            return body
    return {}


def _validate_body(lic: LoadLicense) -> dict[str, Any]:
    return {
        "operation": "validate",
        "credentials": {"email": lic.email, "token": lic.token},
        "device": {"machineFingerprint": lic.fingerprint},
    }


def _next_action(session: _SessionState) -> str:
    if session.alive:
        return "heartbeat"
    return "takeover" if session.take_over else "start"


def _session_body(lic: LoadLicense, session: _SessionState, action: str) -> dict[str, Any]:
    if action in ("start", "takeover"):
        session.session_id = f"rh-{uuid.uuid4().hex[:16]}"
    return {
        "operation": "session",
        "action": action,
        "credentials": {"email": lic.email, "token": lic.token, "sessionId": session.session_id},
        "device": {"machineFingerprint": lic.fingerprint},
    }


def _follow_session(session: _SessionState, answer: Answer) -> None:
    """Like a till: keep heartbeating while alive; start again when the session is
    gone; on a conflict take over next time (a till restarted on its own license)."""
    if answer.status == 200:
        session.alive, session.take_over = True, False
    elif answer.status in (404, 409):
        # Dead, ended or kicked: start anew; a conflict (our own earlier start,
        # whose answer was lost in an outage) is taken over.
        session.alive = False
        session.take_over = answer.code == "SESSION_CONFLICT"
    # A 5xx or no answer says nothing about the session: try the same again.


__all__ = [
    "OPERATIONS",
    "WRITES",
    "Answer",
    "LoadLicense",
    "LoadPlan",
    "RehearsalLoad",
    "split_pools",
]
