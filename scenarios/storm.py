"""A webhook retry storm on the test clock, with an oracle: ``run_storm``.

What it does. The fake Stripe simulates enough customers' billing lives for
``StormConfig.events`` events (``fixtures.stripe.lifecycle.simulate``, which also
gives the oracle of every license's final state and emails), plans their
deliveries with duplicates and local reordering (``delivery.plan``), and sends
them to a service started with ``--test-clock``. For ``outage_seconds`` of the
storm, from ``outage_start_seconds``, the service answers every webhook 5xx
(``/__harness__/faults`` ``{"webhook": {"reject": true}}``: 503; ``outage="db"``
makes every database call fail instead, ``{"db": {"errors": true}}``). Each
delivery not answered 2xx is retried as Stripe retries
(``fixtures.stripe.retries.STRIPE_LIVE``: exponential backoff from one minute,
for up to three days), the same event id and body, re-signed with a fresh
timestamp (``Sender.attempt`` signs each attempt at send time). Afterwards
the judges (``scenarios.storm_judge``) say whether every event was processed
exactly once, every license ends where the oracle says, and, given the database
file, whether each acknowledged event, audit row and email is there once.

How two minutes pass in seconds. Time is the service's test clock, moved by the
storm, whose timetable is the pure :mod:`scenarios.storm_schedule`. Every attempt
(first delivery or retry) has a due time on that clock; the storm takes the
earliest, moves the clock forward to it (``POST /__harness__/clock``, never
backwards), sends every attempt due within the next ``tick_seconds``
concurrently, and schedules each failure's retry at the clock's time plus the
schedule's delay. The outage's start and end are due times too,
so the fault is switched on and off at exactly those clock times. Nothing
sleeps: a retry due in four minutes is sent as soon as everything due before
it has been answered, so the wall time is the time the service takes to answer,
and the clock reads what it would on a real day. On a served clock (``serve
--test-clock``: real time plus an offset) the clock also moves by itself between
steps; the storm reads it at each step and only ever adds to it.

API (synchronous, for the rehearsal runner)::

    result = run_storm(base_url, [secret], StormConfig(events=10_000), db=db_path,
                       progress=lambda p: print(p.line()))
    result.passed, result.lost, result.applied_twice, result.summary()

Bounded: ``StormConfig.deadline_seconds`` of wall time, after which the storm
stops and reports what was never acknowledged as lost.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

import aiohttp

from fixtures.stripe.delivery import Delivery, DeliveryOptions, Shuffle, plan
from fixtures.stripe.lifecycle import MONTH, ExpectedLicense, SimulatedStream, simulate
from fixtures.stripe.retries import STRIPE_LIVE, RetrySchedule
from fixtures.stripe.sender import Attempt, Sender, SenderOptions
from licensing_service.contract import routes
from licensing_service.contract.faults import DbFault, FaultsRequest, WebhookFault
from loadtests.harness.checks.target import Target
from loadtests.harness.checks.webhook_idempotency import final_state_mismatches, retag
from scenarios.storm_db import read_stored
from scenarios.storm_judge import Findings, judge
from scenarios.storm_schedule import Edge, Timetable

Outage = Literal["webhook", "db"]
EVENTS_PER_CUSTOMER_GUESS = 15.0  # simulate() over six months: ~15.3
EXAMPLES = 5
# Each unit of work held this long while a kill waits for a delivery in flight
# (under the service's 2 s database timeout): no answer can come before the kill.
KILL_LATENCY_MS = 1000


class StormError(Exception):
    """The storm could not run (the target has no test clock, refused a fault...)."""


@dataclass(frozen=True, slots=True)
class StormConfig:
    events: int = 10_000  # at least this many events: customers are added until there are
    months: int = 6
    seed: int = 1
    duplicate_rate: float = 0.3
    shuffle: Shuffle = "window"
    window: int = 64
    storm_seconds: float = 600.0  # test-clock time over which the first deliveries are spread
    outage_start_seconds: float = 120.0  # after the storm's start, on the test clock
    outage_seconds: float = 120.0  # 0: no outage
    outage: Outage = "webhook"
    schedule: RetrySchedule = STRIPE_LIVE
    concurrency: int = 16
    tick_seconds: float = 1.0  # attempts due within this much clock time go out together
    timeout_seconds: float = 10.0  # per attempt, as Stripe waits for an answer
    deadline_seconds: float = 900.0  # wall time for the whole storm
    # Wall time waited after the last answer, before judging: how long a target
    # that commits after it answers is given (the reference service needs none).
    settle_seconds: float = 0.0

    def __post_init__(self) -> None:
        problems = []
        if self.events < 1:
            problems.append(f"events must be at least 1, not {self.events}")
        if self.storm_seconds <= 0 or self.tick_seconds <= 0 or self.deadline_seconds <= 0:
            problems.append("storm_seconds, tick_seconds and deadline_seconds must be positive")
        if self.outage_seconds < 0 or self.outage_start_seconds < 0:
            problems.append("outage_start_seconds and outage_seconds must not be negative")
        if self.concurrency < 1:
            problems.append(f"concurrency must be at least 1, not {self.concurrency}")
        if problems:
            raise StormError("; ".join(problems))


@dataclass(frozen=True, slots=True)
class StormProgress:
    clock_seconds: float  # test-clock time since the storm's start
    attempts: int
    acknowledged: int  # deliveries answered 2xx
    deliveries: int
    pending: int  # attempts waiting for their due time
    outage: bool
    kills: int

    def line(self) -> str:
        return (
            f"storm t+{self.clock_seconds:7.1f}s  {self.acknowledged}/{self.deliveries}"
            f" deliveries acknowledged, {self.attempts} attempts, {self.pending} pending"
            f"{', OUTAGE' if self.outage else ''}{f', {self.kills} kills' if self.kills else ''}"
        )


@dataclass(frozen=True, slots=True)
class Sent:
    """One attempt on the storm's timeline."""

    index: int  # the delivery's place in the plan
    attempt: int
    at: float  # test-clock seconds since the storm's start
    status: int


@dataclass(frozen=True, slots=True)
class Stream:
    events: list[dict[str, Any]]
    oracle: dict[str, ExpectedLicense]
    deliveries: list[Delivery]


@dataclass(frozen=True, slots=True)
class StormResult:
    events: int
    deliveries: int
    attempts: int
    acknowledged: int  # events answered 2xx at least once
    retried: int  # attempts after a delivery's first
    lost: int
    applied_twice: int
    state_mismatches: int
    audit_problems: int
    email_problems: int
    refused_in_outage: int  # attempts answered non-2xx (or not at all) while the outage was on
    outage_windows: list[tuple[float, float]]  # test-clock seconds since the storm's start
    kills: int
    unanswered: int  # attempts that got no HTTP answer (in flight at a kill, timed out)
    answer_lost_after_commit: int  # events committed whose answer a kill took (then duplicate)
    clock_seconds: float  # test-clock time the storm took
    wall_seconds: float
    examples: list[str]  # the first few problems, one line each
    timeline: list[Sent] = field(repr=False)
    attempts_log: list[Attempt] = field(repr=False)
    stream: Stream = field(repr=False)  # the events, their oracle and the delivery plan

    @property
    def passed(self) -> bool:
        return not self.examples

    def summary(self) -> dict[str, Any]:
        keys = [
            "events",
            "deliveries",
            "attempts",
            "acknowledged",
            "retried",
            "lost",
            "applied_twice",
            "state_mismatches",
            "audit_problems",
            "email_problems",
            "refused_in_outage",
            "kills",
            "unanswered",
            "answer_lost_after_commit",
        ]
        out: dict[str, Any] = {k: getattr(self, k) for k in keys}
        out["passed"] = self.passed
        out["outage_windows"] = [[round(a, 1), round(b, 1)] for a, b in self.outage_windows]
        out["clock_seconds"] = round(self.clock_seconds, 1)
        out["wall_seconds"] = round(self.wall_seconds, 1)
        out["examples"] = self.examples
        return out


class Crasher(Protocol):
    """What the crash-restart storm does to the service (``scenarios.crash``)."""

    def kill(self) -> None: ...

    def restart(self) -> None: ...


def make_stream(config: StormConfig, now: float, tag: str) -> Stream:
    """The simulated stream for at least ``config.events`` events, half of its
    months behind ``now`` and half ahead (so a license the oracle calls active is
    paid beyond now), its emails made unique to ``tag``, and its delivery plan."""
    start = datetime.fromtimestamp(int(now) - config.months * MONTH // 2, UTC)
    customers = max(1, math.ceil(config.events / EVENTS_PER_CUSTOMER_GUESS))
    stream: SimulatedStream = simulate(customers, config.months, config.seed, start=start)
    while len(stream.events) < config.events:
        customers = math.ceil(customers * config.events / len(stream.events)) + 1
        stream = simulate(customers, config.months, config.seed, start=start)
    events, oracle = retag(stream.events, stream.oracle, tag)
    options = DeliveryOptions(
        seed=config.seed,
        duplicate_rate=config.duplicate_rate,
        shuffle=config.shuffle,
        window=config.window,
    )
    return Stream(events, oracle, plan(events, options))


def run_storm(
    base_url: str,
    secrets: Sequence[str],
    config: StormConfig | None = None,
    *,
    db: Path | str | None = None,
    progress: Callable[[StormProgress], None] | None = None,
    crasher: Crasher | None = None,
    kills: int = 0,
    replicas: Sequence[str] = (),
    outage_switch: Callable[[bool], None] | None = None,
    victim: int = 0,
) -> StormResult:
    """Run the storm against ``base_url`` (a ``--test-clock`` service) and judge it.

    ``replicas``: more base URLs of the same service (replicas on one database):
    each attempt of a delivery goes to the next one after its previous attempt's
    (a Stripe retry landing on another replica), and faults are set on all.
    ``db``: the service's SQLite file or PostgreSQL URL, for the durability
    judges (:mod:`scenarios.storm_db`; without one they are skipped).
    ``crasher`` and ``kills``: kill -9 and restart the service at that many points
    spread over the storm (``scenarios.crash.run_crash_restart`` is the front).
    ``victim``: which process the crasher kills, 0 for ``base_url``, n for
    ``replicas[n - 1]``: only it is slowed before a kill, and the delivery held
    in flight at the kill is sent to it.
    ``outage_switch``: how the outage is switched on and off instead of the
    fault route (the rehearsal runner's proxy in front of PostgreSQL)."""
    config = config or StormConfig()
    if kills and crasher is None:
        raise StormError("kills need a crasher that can kill and restart the service")
    target = Target(base_url, secrets)
    try:
        engine = _Engine(base_url, secrets, config, target.run, progress, crasher, kills)
        engine.others = [url.rstrip("/") for url in replicas]
        engine.outage_switch = outage_switch
        engine.victim = victim
        started = time.perf_counter()
        asyncio.run(engine.run())
        wall = time.perf_counter() - started
        if config.settle_seconds > 0:
            time.sleep(config.settle_seconds)
        return _judged(engine, target, db, wall)
    finally:
        target.close()


def _judged(engine: _Engine, target: Target, db: Path | str | None, wall: float) -> StormResult:
    stream = engine.stream
    assert stream is not None
    stored = read_stored(db, stream.oracle) if db is not None else None
    findings: Findings = judge(engine.attempts, stream.events, stream.oracle, stored)
    states = final_state_mismatches(target, stream.oracle)
    # What makes the whole run doubtful first, then one line per problem.
    examples = []
    if engine.outage_windows and engine.refused_in_outage == 0:
        examples.append("the outage refused no delivery: the storm tested no retry")
    if engine.deadline_hit:
        examples.append(
            f"the storm stopped at its deadline ({engine.config.deadline_seconds:g} s of wall"
            f" time) with {engine.pending} attempts still pending"
        )
    examples += [*findings.all(), *states]
    return StormResult(
        events=len(stream.events),
        deliveries=len(stream.deliveries),
        attempts=len(engine.attempts),
        acknowledged=findings.acknowledged,
        retried=sum(1 for a in engine.attempts if a.attempt > 1),
        lost=len(findings.lost),
        applied_twice=len(findings.applied_twice),
        state_mismatches=len(states),
        audit_problems=len(findings.audit),
        email_problems=len(findings.emails),
        refused_in_outage=engine.refused_in_outage,
        outage_windows=engine.outage_windows,
        kills=engine.kills_done,
        unanswered=sum(1 for a in engine.attempts if a.status == 0),
        answer_lost_after_commit=findings.answer_lost_after_commit,
        clock_seconds=engine.elapsed_clock(),
        wall_seconds=wall,
        examples=_shortened(examples),
        timeline=engine.timeline,
        attempts_log=engine.attempts,
        stream=stream,
    )


def _shortened(lines: list[str]) -> list[str]:
    if len(lines) <= EXAMPLES:
        return lines
    return [*lines[:EXAMPLES], f"... and {len(lines) - EXAMPLES} more"]


class _Engine:
    """The storm's loop: one asyncio task, the test clock, the outage, the kills."""

    def __init__(
        self,
        base_url: str,
        secrets: Sequence[str],
        config: StormConfig,
        tag: str,
        progress: Callable[[StormProgress], None] | None,
        crasher: Crasher | None,
        kills: int,
    ) -> None:
        self.base = base_url.rstrip("/")
        self.secrets = list(secrets)
        self.config = config
        self.tag = tag
        self.progress = progress
        self.crasher = crasher
        self.kills = kills
        self.rng = random.Random(config.seed)  # noqa: S311 - retry jitter, not secrets
        self.stream: Stream | None = None
        self.attempts: list[Attempt] = []
        self.timeline: list[Sent] = []
        self.outage_windows: list[tuple[float, float]] = []
        self.refused_in_outage = 0
        self.kills_done = 0
        self.deadline_hit = False
        self.pending = 0
        self.now = 0.0  # the service's clock, unix seconds, as last read or moved
        self.start = 0.0
        self.outage_on = False
        self.acknowledged = 0
        self.others: list[str] = []  # more replicas to spread the deliveries over
        self.senders: list[Sender] = []  # one per replica, the first for base_url
        self.outage_switch: Callable[[bool], None] | None = None
        self.victim = 0  # the index in [base, *others] of the process kills hit
        # While a kill waits: the held delivery's event id, and what its write calls.
        self._on_written: tuple[bytes, Callable[[], None]] | None = None

    def elapsed_clock(self) -> float:
        return self.now - self.start

    async def run(self) -> None:
        cfg = self.config
        connector = aiohttp.TCPConnector(limit=cfg.concurrency)
        timeout = aiohttp.ClientTimeout(total=cfg.timeout_seconds)
        trace = aiohttp.TraceConfig()
        trace.on_request_chunk_sent.append(self._chunk_sent)
        async with aiohttp.ClientSession(
            connector=connector, timeout=timeout, trace_configs=[trace]
        ) as http:
            self.http = http
            self.now = await self._read_clock()
            self.start = self.now
            self.stream = make_stream(cfg, self.now, self.tag)
            self.senders = [
                Sender(
                    base + routes.WEBHOOK,
                    SenderOptions(self.secrets, inject_failures=False),
                    clock=lambda: self.now,
                )
                for base in [self.base, *self.others]
            ]
            await self._loop(self.senders[0], self.stream.deliveries)
            if self.outage_on:
                await self._switch_outage(False)

    async def _loop(self, sender: Sender, deliveries: Sequence[Delivery]) -> None:
        cfg = self.config
        table = Timetable(
            len(deliveries),
            self.start,
            cfg.storm_seconds,
            cfg.schedule,
            tick=cfg.tick_seconds,
            outage=(cfg.outage_start_seconds, cfg.outage_seconds),
            kills=self.kills,
            rng=self.rng,
        )
        deadline = time.monotonic() + cfg.deadline_seconds
        while (due := table.next_due()) is not None:
            if time.monotonic() > deadline:
                self.deadline_hit = True
                break
            await self._move_clock_to(due)
            step = table.take(self.now)
            if isinstance(step, Edge):
                await self._switch_outage(step.on)
                continue
            results = await self._send(sender, deliveries, step.attempts, step.kill)
            for (index, attempt), result in zip(step.attempts, results, strict=True):
                self.attempts.append(result)
                self.timeline.append(Sent(index, attempt, self.now - self.start, result.status))
                ok = 200 <= result.status < 300
                if self.outage_on and not ok:
                    self.refused_in_outage += 1
                self.acknowledged += ok
                # A forged delivery is refused once and never retried, as Stripe
                # never sent it.
                table.settle(index, attempt, ok, self.now, retry=deliveries[index].forgery is None)
            self.pending = table.pending
            self._report(len(deliveries))
        self.pending = table.pending

    async def _send(
        self,
        sender: Sender,
        deliveries: Sequence[Delivery],
        batch: Sequence[tuple[int, int]],
        kill_now: bool,
    ) -> list[Attempt]:
        if not (kill_now and self.crasher is not None):
            return await self._attempts(sender, deliveries, batch)
        # All but the last attempt of the batch concurrently; once half of those
        # are answered (the others in flight: some committed and not yet answered,
        # some not yet committed, as the race falls), every unit of work is held
        # KILL_LATENCY_MS and the last is sent: the kill lands as soon as its
        # request is written to the service, so that at least that delivery is
        # in flight at the kill whatever the speed of the service's commits.
        first, last = batch[:-1], batch[-1:]
        half = asyncio.Event()
        answered = 0

        def one_answered() -> None:
            nonlocal answered
            answered += 1
            if answered == max(1, len(first) // 2):
                half.set()

        # Only the process about to die is slowed, and the held delivery goes
        # to it: with several replicas the others go on at full speed.
        victim = [self.base, *self.others][self.victim]
        racing = asyncio.ensure_future(self._attempts(sender, deliveries, first, one_answered))
        if first:
            await _until(half, racing)
        await self._apply_db_fault(KILL_LATENCY_MS, [victim])
        written = asyncio.Event()
        ((index, _),) = last
        self._on_written = (deliveries[index].event_id.encode(), written.set)
        to_victim = self.senders[self.victim]
        held = asyncio.ensure_future(self._attempts(sender, deliveries, last, via=to_victim))
        try:
            await _until(written, held)
        finally:
            self._on_written = None
        self.crasher.kill()
        self.kills_done += 1
        results = [*await racing, *await held]
        try:
            await asyncio.to_thread(self.crasher.restart)
        except Exception as exc:  # a service that does not come back is the finding
            raise StormError(
                f"the service did not come back after kill -9 number {self.kills_done}:"
                f" {type(exc).__name__}: {exc}"
            ) from exc
        # A restarted service starts on real time, with every fault off (the
        # outage's put back); a replica left dead holds no fault to clear.
        await self._set_clock(self.now)
        await self._apply_db_fault(0, [victim], dead_ok=True)
        if self.outage_on and self.config.outage == "webhook":
            reject = FaultsRequest(webhook=WebhookFault(reject=True))
            await self._post_faults(reject, "outage", [victim], dead_ok=True)
        return results

    async def _attempts(
        self,
        sender: Sender,
        deliveries: Sequence[Delivery],
        batch: Sequence[tuple[int, int]],
        answered: Callable[[], None] = lambda: None,
        via: Sender | None = None,
    ) -> list[Attempt]:
        """Each attempt of ``batch`` concurrently (up to ``concurrency`` at a time),
        ``answered`` called as each ends; all through ``via`` when given."""
        sem = asyncio.Semaphore(self.config.concurrency)

        async def one(index: int, attempt: int) -> Attempt:
            # One replica: always ``sender``; several: attempt n of a delivery on
            # the replica after attempt n - 1's.
            chosen = sender
            if via is not None:
                chosen = via
            elif self.others:
                chosen = self.senders[(index + attempt) % len(self.senders)]
            async with sem:
                result = await chosen.attempt(self.http, index, deliveries[index], attempt)
            answered()
            return result

        return list(await asyncio.gather(*(one(i, a) for i, a in batch)))

    async def _chunk_sent(
        self,
        _session: aiohttp.ClientSession,
        _ctx: Any,
        params: aiohttp.TraceRequestChunkSentParams,
    ) -> None:
        # Called as a request's body is handed to the transport, which writes it
        # in the same step: whoever waits on ``_on_written`` wakes after the write.
        if self._on_written is not None and self._on_written[0] in params.chunk:
            self._on_written[1]()

    def _report(self, deliveries: int) -> None:
        if self.progress is not None:
            self.progress(
                StormProgress(
                    self.now - self.start,
                    len(self.attempts),
                    self.acknowledged,
                    deliveries,
                    self.pending,
                    self.outage_on,
                    self.kills_done,
                )
            )

    # ------------------------------------------------------- the service

    async def _read_clock(self) -> float:
        async with self.http.get(self.base + routes.HARNESS_CLOCK) as response:
            if response.status != 200:
                raise StormError(
                    f"{self.base}{routes.HARNESS_CLOCK} answered {response.status}: the storm"
                    " needs a service started with --test-clock"
                )
            return _clock_of(await response.json())

    async def _move_clock_to(self, at: float) -> None:
        """Forward only: to ``at`` if the service's clock is behind it."""
        now = await self._read_clock()
        if at > now:
            now = await self._post_clock({"advance_seconds": at - now})
        self.now = max(self.now, now)

    async def _set_clock(self, at: float) -> None:
        self.now = await self._post_clock({"set": datetime.fromtimestamp(at, UTC).isoformat()})

    async def _post_clock(self, body: dict[str, Any]) -> float:
        async with self.http.post(self.base + routes.HARNESS_CLOCK, json=body) as response:
            if response.status != 200:
                raise StormError(f"the service refused to move its clock: HTTP {response.status}")
            return _clock_of(await response.json())

    async def _switch_outage(self, on: bool) -> None:
        await self._apply_outage(on)
        at = self.now - self.start
        if on:
            self.outage_windows.append((at, at))
        elif self.outage_windows:
            self.outage_windows[-1] = (self.outage_windows[-1][0], at)
        self.outage_on = on

    async def _apply_outage(self, on: bool) -> None:
        cfg = self.config
        if self.outage_switch is not None:
            await asyncio.to_thread(self.outage_switch, on)
            return
        request = (
            FaultsRequest(webhook=WebhookFault(reject=on))
            if cfg.outage == "webhook"
            else FaultsRequest(db=DbFault(errors=on))
        )
        # After a replica's kill, the dead one is passed over.
        await self._post_faults(request, "outage", dead_ok=bool(self.kills_done and self.others))

    async def _apply_db_fault(
        self, latency_ms: int, bases: Sequence[str], *, dead_ok: bool = False
    ) -> None:
        """The database's fault on ``bases``: ``latency_ms``, and the db
        outage's errors if it is on."""
        errors = self.outage_on and self.config.outage == "db"
        request = FaultsRequest(db=DbFault(errors=errors, latency_ms=latency_ms))
        await self._post_faults(request, "db latency", bases, dead_ok=dead_ok)

    async def _post_faults(
        self,
        request: FaultsRequest,
        what: str,
        bases: Sequence[str] | None = None,
        *,
        dead_ok: bool = False,
    ) -> None:
        """Faults live in each process: set on every one, or on ``bases``.
        ``dead_ok``: a process that refuses the connection (a replica killed and
        left dead) holds no fault, and is passed over."""
        body = request.model_dump(mode="json", exclude_none=True)
        for base in bases if bases is not None else [self.base, *self.others]:
            try:
                async with self.http.post(base + routes.HARNESS_FAULTS, json=body) as response:
                    if response.status != 200:
                        raise StormError(f"{base} refused the {what} fault: HTTP {response.status}")
            except aiohttp.ClientConnectorError:
                if not dead_ok:
                    raise


async def _until(event: asyncio.Event, task: asyncio.Future[Any]) -> None:
    """Wait for ``event``, or for ``task`` to end first (done, or failed)."""
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({waiter, task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()


def _clock_of(body: Any) -> float:
    raw = body["now"] if isinstance(body, dict) else None
    if not isinstance(raw, str):
        raise StormError(f"the clock route answered no `now`: {body!r}")
    return datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
