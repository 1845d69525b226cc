"""One rehearsal, start to verdicts: the target, its licenses, the steady state,
the method, the rollbacks (always), the steady state again, the judgement.

Rollbacks run after a method that succeeded, after a step that failed and after
Ctrl-C (a second Ctrl-C during the rollbacks is ignored until they are done);
the load is stopped in every case. A rehearsal that could not be carried out
(its target refused a step, it ran past ``max_duration``, it was interrupted,
the steady state did not hold before it) is an ERROR: exit 2, not judged.
"""

from __future__ import annotations

import contextlib
import json
import random
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import httpx

from licensing_service.contract import routes
from licensing_service.contract.faults import FaultsRequest
from loadtests.harness.errors import GateError
from loadtests.harness.processes import sigint_held
from loadtests.harness.provision import ProvisionError
from loadtests.harness.service_process import ServiceProcess
from loadtests.rehearsal_load import LoadLicense, LoadPlan, RehearsalLoad
from scenarios.expectations import Outcome, Verdict, exit_code, judge_all
from scenarios.fault_control import FaultControl
from scenarios.model import Probe, Rehearsal
from scenarios.poller import HealthPoller
from scenarios.recording import (
    ClockMove,
    FaultWindow,
    OutboxSample,
    Recording,
    StepRecord,
)
from scenarios.steps import ProxyStep, Step, StepFailed, StormStep
from scenarios.target import Target, licenses, open_target
from scenarios.timeline import Status, Timeline

RECOVERY_S = 5.0  # how long the steady state may take to hold again after the rollbacks
WAIT_SLICE_S = 0.05


class Overrun(RuntimeError):
    """The rehearsal ran past its ``max_duration``."""


@dataclass(frozen=True, slots=True)
class RunOptions:
    target: str | None = None
    fast: bool = False
    webhook_secrets: tuple[str, ...] = ()
    # Added to the started service's environment after the file's [service]:
    # how a test plants a broken service (a breaker that never opens).
    service_env: Mapping[str, str] = field(default_factory=dict)
    out: TextIO | None = None
    live: bool | None = None  # None: a live display when `out` is a TTY
    seed: int | None = None
    # The PostgreSQL admin URL for rehearsals on it (scenarios.pg_admin.admin_url).
    pg: str | None = None


@dataclass(frozen=True, slots=True)
class ScenarioResult:
    name: str
    source: str
    fast: bool
    verdicts: tuple[Verdict, ...]
    skipped: str | None = None  # why, when not run
    interrupted: bool = False
    recording: Recording | None = None
    duration_s: float = 0.0

    @property
    def exit_code(self) -> int:
        if self.skipped is not None:
            return 0
        return exit_code(self.verdicts)

    @property
    def outcome(self) -> str:
        if self.skipped is not None:
            return "skip"
        return {0: "pass", 1: "fail"}.get(self.exit_code, "error")


def run_scenario(rehearsal: Rehearsal, options: RunOptions) -> ScenarioResult:
    reh = rehearsal.fast_variant() if options.fast else rehearsal
    started = time.monotonic()

    def result(verdicts: list[Verdict], **more: Any) -> ScenarioResult:
        return ScenarioResult(
            reh.name,
            reh.source,
            options.fast,
            tuple(verdicts),
            duration_s=time.monotonic() - started,
            **more,
        )

    with (
        tempfile.TemporaryDirectory(prefix=f"rehearse-{reh.name}-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        sink = Path(tmp) / "emails.jsonl"
        env = {**_service_env(reh, sink), **options.service_env}
        if reh.service.stripe_api and options.target is None:
            from fixtures.stripe.api_server import DEFAULT_KEY, FakeStripeServer

            stripe = stack.enter_context(FakeStripeServer())
            env = {"STRIPE_SECRET_KEY": DEFAULT_KEY, "STRIPE_API_BASE": stripe.url, **env}
        try:
            db: str | None = None
            db_proxy = None
            if reh.service.store == "postgresql" and options.target is None:
                prepared = _postgresql(reh, options, stack)
                if isinstance(prepared, Verdict):
                    return result([prepared])
                if isinstance(prepared, str):
                    return result([], skipped=prepared)
                direct, db, db_proxy = prepared
            with open_target(
                options.target,
                options.webhook_secrets,
                Path(tmp),
                env,
                db=db,
                replicas=reh.service.replicas,
            ) as target:
                missing = target.missing(reh.needs())
                if missing is not None:
                    return result([], skipped=missing)
                if db is not None:
                    target = replace(target, db_url=direct)
                seed = options.seed if options.seed is not None else random.randrange(1 << 30)  # noqa: S311 - a seed, not a secret
                lics = licenses(target, reh.load.licenses, reh.load.suspended, seed=seed)
                run = _Run(reh, target, lics, options, seed, sink if target.managed else None)
                run.db_proxy = db_proxy
                verdicts, recording, interrupted = run.execute()
                return result(verdicts, recording=recording, interrupted=interrupted)
        except (GateError, ProvisionError, httpx.HTTPError) as exc:
            return result(
                [Verdict("setup", Outcome.ERROR, "a target to rehearse on", "none", str(exc))]
            )


def _postgresql(
    reh: Rehearsal, options: RunOptions, stack: contextlib.ExitStack
) -> tuple[str, str, Any] | Verdict | str:
    """A database of the run's own (dropped when ``stack`` closes), and a fault
    proxy in front of it when the file asks: (its URL, the URL the service is
    given, the proxy or None); or why not: the skip reason, or an ERROR where a
    server is required (``LH_TEST_PG_REQUIRED=1``)."""
    from scenarios import pg_admin

    admin = pg_admin.admin_url(options.pg)
    reason = pg_admin.unreachable(admin)
    if reason is not None:
        if pg_admin.required():
            return Verdict(
                "setup", Outcome.ERROR, "PostgreSQL (LH_TEST_PG_REQUIRED=1)", "none", reason
            )
        return f"needs postgresql: {reason}"
    try:
        direct = stack.enter_context(pg_admin.scratch_database(admin, reh.name))
    except Exception as exc:  # psycopg's: no right to create databases, the server gone...
        why = f"{type(exc).__name__}: {exc}".replace(admin, pg_admin.redacted(admin))
        return Verdict("setup", Outcome.ERROR, "a database of the run's own", "none", why)
    if not reh.service.db_proxy:
        return direct, direct, None
    proxy = stack.enter_context(_proxy_for(pg_admin.address(direct)))
    return direct, pg_admin.with_address(direct, "127.0.0.1", proxy.port), proxy


class _Run:
    """The controls the steps act through (:class:`scenarios.steps.Controls`) and
    everything recorded on the way."""

    def __init__(
        self,
        reh: Rehearsal,
        target: Target,
        lics: list[LoadLicense],
        options: RunOptions,
        seed: int,
        sink: Path | None,
    ) -> None:
        self.reh = reh
        self.sink = sink
        self.target = target
        self.licenses = lics
        self.origin = time.monotonic()
        self.deadline = self.origin + reh.scenario.max_duration_s
        # Generous: a control call waits in line behind the load on a slowed service.
        self.client = httpx.Client(base_url=target.base_url, timeout=30)
        self.faults = FaultControl(self.client)
        # A TCP fault proxy between the clients (load, probes) and the service, when
        # the method uses one; the control calls and /health go straight to it.
        self.proxy = _proxy_for(_address(target.clients)).start() if _uses_proxy(reh) else None
        self.client_url = (
            f"http://127.0.0.1:{self.proxy.port}" if self.proxy is not None else target.clients
        )
        self.db_proxy: Any = None  # scenarios.proxy.FaultProxy in front of PostgreSQL
        self.db_proxy_active: list[str] = []
        self.replica_kills: list[dict[str, Any]] = []
        self.fresh_after_kill: list[int] = []  # statuses of new clients after a replica's kill
        self.sessions: list[dict[str, Any]] = []
        self._watch_sessions = any(e.name == "one_session_per_license" for e in reh.expect)
        self._next_sessions = 0.0
        self.clients = httpx.Client(base_url=self.client_url, timeout=reh.load.timeout_ms / 1000)
        self.service_active: list[str] = []
        self.proxy_active: list[str] = []
        self.active: list[str] = []
        self.windows: list[FaultWindow] = []
        self.window_start: float | None = None
        self.moves: list[ClockMove] = []
        self.steps: list[StepRecord] = []
        self.outbox: list[OutboxSample] = []
        self.storms: list[dict[str, Any]] = []
        self.current = "setting up"
        self.poller = HealthPoller(target.base_url, self.clock)
        plan = LoadPlan(
            users=reh.load.users,
            think_s=reh.load.think_ms / 1000,
            timeout_s=reh.load.timeout_ms / 1000,
            mix=reh.load.mix.weights(),
            licenses=lics,
            max_seconds=float(reh.scenario.max_duration_s),
            webhook_secrets=target.secrets,
            seed=seed,
        )
        self.load = RehearsalLoad(self.client_url, plan, self.clock)
        self.timeline = Timeline(self.status, options.out, options.live)
        self._seen_state: tuple[str, int] | None = None
        self._watched = 0  # poller samples already looked at
        self._watch_lock = threading.Lock()
        self._watch_outbox = any(e.name == "outbox_drains" for e in reh.expect)
        self._next_outbox = 0.0

    def clock(self) -> float:
        return time.monotonic() - self.origin

    # ------------------------------------------------------------------ the run

    def execute(self) -> tuple[list[Verdict], Recording, bool]:
        verdicts: list[Verdict] = []
        interrupted = False
        self.poller.start()
        try:
            with self.timeline:
                self.timeline.event(
                    self.clock(),
                    f"{self.reh.name}: {len(self.licenses)} licenses on {self.target.base_url}",
                )
                before = self._steady_state("before")
                if before is not None:
                    verdicts.append(
                        Verdict(
                            "steady_state_before",
                            Outcome.ERROR,
                            "the steady state holds",
                            "it does not",
                            before,
                        )
                    )
                else:
                    interrupted, problem = self._method()
                    if problem is not None:
                        verdicts.append(
                            Verdict(
                                "method",
                                Outcome.ERROR,
                                "every step carried out",
                                "stopped",
                                problem,
                            )
                        )
                self._rollbacks()
                self.current = "steady state after"
                after = self._steady_state("after", RECOVERY_S)
                verdicts.append(
                    Verdict(
                        "steady_state_after",
                        Outcome.FAIL if after else Outcome.PASS,
                        "the steady state holds again after the rollbacks",
                        "it does not" if after else "it does",
                        after or "",
                    )
                )
        finally:
            self.poller.stop()
            self.load.stop()
            self.client.close()
            self.clients.close()
            if self.proxy is not None:
                self.proxy.stop()
        recording = self.recording()
        if not interrupted and not any(
            v.name in ("steady_state_before", "method") for v in verdicts
        ):
            verdicts.extend(judge_all(self.reh.expect, recording))
        elif interrupted:
            verdicts.append(
                Verdict(
                    "method",
                    Outcome.ERROR,
                    "a whole method",
                    "interrupted",
                    "Ctrl-C; the rollbacks ran",
                )
            )
        return verdicts, recording, interrupted

    def _method(self) -> tuple[bool, str | None]:
        try:
            for n, step in enumerate(self.reh.method):
                self._step("method", n, step)
        except KeyboardInterrupt:
            self.timeline.event(self.clock(), "interrupted: running the rollbacks")
            return True, None
        except (StepFailed, Overrun, httpx.HTTPError) as exc:
            self.timeline.event(self.clock(), f"method stopped: {exc}")
            return False, str(exc)
        return False, None

    def _rollbacks(self) -> None:
        with sigint_held():
            for n, step in enumerate(self.reh.rollbacks):
                try:
                    self._step("rollbacks", n, step, bounded=False)
                except (StepFailed, Overrun, httpx.HTTPError) as exc:
                    self.timeline.event(self.clock(), f"rollback {n + 1} failed: {exc}")
            self.stop_load()
            self._close_window(self.clock())

    def _step(self, phase: str, n: int, step: Step, *, bounded: bool = True) -> None:
        if bounded and time.monotonic() > self.deadline:
            raise Overrun(f"past max_duration ({self.reh.scenario.max_duration_s}s)")
        self.current = f"{phase} {n + 1}: {step.describe()}"
        start = self.clock()
        self.timeline.event(start, self.current)
        ok, detail = False, ""
        try:
            detail = step.run(self)
            ok = True
        except StepFailed as exc:
            detail = str(exc)
            raise
        finally:
            label = step.describe()
            self.steps.append(
                StepRecord(
                    phase,
                    n,
                    str(getattr(step, "kind", "?")),
                    label,
                    start,
                    self.clock(),
                    ok,
                    detail,
                )
            )
            self._watch()
        if detail:
            self.timeline.event(self.clock(), f"  {detail}")

    # ------------------------------------------------------------------ Controls

    def set_faults(self, request: FaultsRequest) -> list[str]:
        self.service_active = self.faults.apply(request)
        self._now_active()
        return self.service_active

    def _now_active(self) -> None:
        """A new fault window whenever the set of active faults changes."""
        active = sorted([*self.service_active, *self.proxy_active, *self.db_proxy_active])
        now = self.clock()
        if active != sorted(self.active):
            self._close_window(now)
            if active:
                self.window_start = now
            self.active = active
            self.timeline.event(now, f"faults: {', '.join(active) or 'cleared'}")

    def _close_window(self, now: float) -> None:
        if self.window_start is not None and self.active:
            self.windows.append(FaultWindow(self.window_start, now, tuple(self.active)))
        self.window_start = None

    def start_load(self) -> None:
        self.load.start(self._sign_offset())

    def stop_load(self) -> None:
        self.load.stop()

    def advance_clock(self, seconds: float) -> None:
        # Webhooks wait while the clock moves (see RehearsalLoad.webhooks_held).
        with self.load.webhooks_held():
            response = self.client.post(routes.HARNESS_CLOCK, json={"advance_seconds": seconds})
            if response.status_code != 200:
                raise StepFailed(f"POST {routes.HARNESS_CLOCK} answered {response.status_code}")
            self.moves.append(ClockMove(self.clock(), seconds))
            self.load.set_sign_offset(self._sign_offset(response.json()))

    def wait(self, seconds: float, until: str | None) -> bool:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if time.monotonic() > self.deadline:
                raise Overrun(f"past max_duration ({self.reh.scenario.max_duration_s}s)")
            self._watch()
            if until is not None and self._met(until):
                return True
            time.sleep(WAIT_SLICE_S)
        self._watch()
        return until is None or self._met(until)

    def set_proxy(self, latency_ms: int, reset: bool, blackhole: bool) -> None:
        if self.proxy is None:  # cannot happen: a method with a proxy step gets one
            raise StepFailed("no proxy in front of the service")
        self.proxy.set(latency_ms=latency_ms, reset=reset, blackhole=blackhole)
        self.proxy_active = [f"proxy.{name}" for name in self.proxy.faults().active()]
        self._now_active()

    def set_db_proxy(self, latency_ms: int, reset: bool, blackhole: bool) -> None:
        if self.db_proxy is None:  # cannot happen: the file is refused without db_proxy = true
            raise StepFailed("no proxy in front of the database")
        self.db_proxy.set(latency_ms=latency_ms, reset=reset, blackhole=blackhole)
        # "db.proxy.reset": a database fault, for the expectations that judge one.
        self.db_proxy_active = [f"db.proxy.{name}" for name in self.db_proxy.faults().active()]
        self._now_active()

    def storm(self, step: StormStep) -> str:
        from scenarios.storm import StormConfig, StormError, StormProgress, run_storm

        config = StormConfig(
            events=step.events,
            seed=step.seed,
            duplicate_rate=float(step.duplicates),
            outage_start_seconds=float(step.outage_start_s),
            outage_seconds=0.0 if step.outage == "none" else float(step.outage_s),
            outage="db" if step.outage in ("db", "db_proxy") else "webhook",
            deadline_seconds=float(step.deadline_s),
        )
        process = self.target.process
        if (step.kills or step.kill_replica) and process is None:
            raise StepFailed("kills need the service the runner started (no --target)")
        crasher: Any = process if step.kills else None
        kills = step.kills
        if step.kill_replica is not None:
            crasher, kills = _ReplicaKiller(self, step.kill_replica), 1
        switch = None
        if step.outage == "db_proxy":

            def switch(on: bool) -> None:
                self.set_db_proxy(0, on, False)

        shown = [0.0]

        def progress(p: StormProgress) -> None:
            if time.monotonic() - shown[0] >= 3.0:  # one line every few seconds
                shown[0] = time.monotonic()
                self.timeline.event(self.clock(), p.line())

        try:
            result = run_storm(
                self.target.base_url,
                list(self.target.secrets),
                config,
                db=self.target.db_url or (process.db if process is not None else None),
                progress=progress,
                crasher=crasher,
                kills=kills,
                replicas=self.target.replicas.urls[1:] if self.target.replicas else (),
                outage_switch=switch,
                victim=step.kill_replica or 0,
            )
        except StormError as exc:
            raise StepFailed(f"the storm could not run: {exc}") from exc
        summary = result.summary()
        summary["kills_asked"] = kills
        summary["outage_asked"] = config.outage_seconds > 0
        self.storms.append(summary)
        return (
            f"{result.events} events, {result.attempts} attempts, {result.lost} lost,"
            f" {result.applied_twice} applied twice, {result.kills} kills"
        )

    def kill(self, replica: int | None = None) -> None:
        if replica is not None:
            self.kill_replica(replica)
            return
        process = self._process()
        self._offset_before_kill = self._clock_offset()
        process.kill()
        self.timeline.event(self.clock(), "service killed (SIGKILL)")

    def kill_replica(self, replica: int) -> None:
        """SIGKILL one replica (never 0, the controls'); the others go on."""
        group = self.target.replicas
        if group is None:
            raise StepFailed("killing a replica needs [service] replicas > 1")
        group.kill(replica)
        self.replica_kills.append({"t": self.clock(), "replica": replica})
        self.timeline.event(self.clock(), f"replica {replica} killed (SIGKILL); the others go on")
        # As many new clients as there are replicas, each on a connection of its
        # own: one of them gets the dead one's turn, which the address must pass on.
        self.fresh_after_kill = []
        for _ in group.processes:
            try:
                got = httpx.get(group.url + routes.HEALTH_LIVE, timeout=5).status_code
            except httpx.HTTPError:
                got = 0
            self.fresh_after_kill.append(got)

    def restart(self, replica: int | None = None) -> None:
        offset = self._clock_offset() if replica is not None else self._offset_before_kill
        if replica is not None:
            if self.target.replicas is None:
                raise StepFailed("restarting a replica needs [service] replicas > 1")
            self.target.replicas.restart(replica)
        else:
            self._process().restart()
        # A new process starts on real time (and on PostgreSQL resets the shared
        # clock of every replica) and without faults: put the clock back where
        # the rehearsal had it, and forget the faults it lost.
        if offset > 0:
            self.client.post(routes.HARNESS_CLOCK, json={"advance_seconds": offset})
        if replica is None:
            self.service_active = []
            self._now_active()
        which = "service" if replica is None else f"replica {replica}"
        self.timeline.event(self.clock(), f"{which} restarted on the same database")

    _offset_before_kill = 0.0

    def _process(self) -> ServiceProcess:
        if self.target.process is None:
            raise StepFailed("kill and restart need the service the runner started")
        return self.target.process

    def _clock_offset(self) -> float:
        with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
            return float(self.client.get(routes.HARNESS_CLOCK).json()["offset_seconds"])
        return 0.0

    # ------------------------------------------------------------------ watching

    def _met(self, until: str) -> bool:
        latest = self.poller.latest()
        if until == "breaker_open":
            return latest is not None and latest.state == "OPEN"
        if until == "breaker_closed":
            return latest is not None and latest.state == "CLOSED"
        if until == "db_answers":
            return latest is not None and latest.health in ("healthy", "degraded")
        if until == "outbox_drained":
            return bool(self.outbox) and self.outbox[-1].queued == 0
        return False

    def _watch(self) -> None:
        """Breaker transitions onto the timeline; the outbox sampled when judged."""
        with self._watch_lock:
            samples = self.poller.samples()
            for s in samples[self._watched :]:
                if (s.state, s.failures) != self._seen_state:
                    detail = f"failures {s.failures}, service time {s.server_time or '?'}"
                    self.timeline.event(s.t, f"breaker {s.state} ({detail})")
                    self._seen_state = (s.state, s.failures)
            self._watched = len(samples)
        if self._watch_outbox and time.monotonic() >= self._next_outbox:
            self._next_outbox = time.monotonic() + 0.5
            self._sample_outbox()
        if self._watch_sessions and time.monotonic() >= self._next_sessions:
            self._next_sessions = time.monotonic() + 0.5
            self.sample_sessions()

    def sample_sessions(self) -> None:
        """Licenses with an active session, and with more than one, in the database."""
        if self.target.db_url is None:
            return
        from scenarios import pg_admin

        with contextlib.suppress(Exception):  # a sample missed is no verdict
            alive, doubled = pg_admin.sessions_alive(self.target.db_url)
            self.sessions.append({"t": self.clock(), "alive": alive, "doubled": doubled})

    def _sample_outbox(self) -> None:
        with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
            rows = self.client.get(routes.HARNESS_EMAILS).json()["emails"]
            queued = sum(1 for r in rows if r.get("delivery_status") == "pending")
            delivered = sum(1 for r in rows if r.get("delivered_at"))
            sent, distinct = _sink_counts(self.sink)
            self.outbox.append(
                OutboxSample(self.clock(), queued, delivered, len(rows), sent, distinct)
            )

    def _sign_offset(self, clock_view: Mapping[str, Any] | None = None) -> float:
        """The target's unix time minus ours: webhooks are signed on its clock."""
        view = clock_view
        if view is None:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                response = self.client.get(routes.HARNESS_CLOCK)
                if response.status_code == 200:
                    view = response.json()
        if not view or "now" not in view:
            return 0.0
        now = datetime.fromisoformat(str(view["now"]).replace("Z", "+00:00"))
        return now.timestamp() - time.time()

    def status(self) -> Status:
        latest = self.poller.latest()
        return Status(
            self.clock(),
            self.current,
            list(self.active),
            latest.state if latest else "?",
            self.load.answers(),
        )

    # ------------------------------------------------------------------ steady state

    def _steady_state(self, when: str, within_s: float = 0.0) -> str | None:
        """None when every probe holds, else what did not (retried for ``within_s``)."""
        end = time.monotonic() + within_s
        while True:
            problems = [p for probe in self.reh.probes if (p := self._probe(probe))]
            if not problems or time.monotonic() >= end:
                break
            time.sleep(0.2)
        text = "; ".join(problems)
        if text:
            self.timeline.event(self.clock(), f"steady state {when}: {text}")
        return text or None

    def _probe(self, probe: Probe) -> str | None:
        active = next((lic for lic in self.licenses if lic.state == "active"), None)
        suspended = next((lic for lic in self.licenses if lic.state == "suspended"), None)
        started = time.perf_counter()
        try:
            if probe.kind == "health":
                response = self.clients.get(routes.HEALTH)
                body = response.json()
                state = body.get("circuitBreaker", {}).get("state")
                problem = (
                    None
                    if body.get("status") == "healthy" and state == "CLOSED"
                    else (f"/health {body.get('status')}, breaker {state}")
                )
            else:
                lic = active if probe.kind == "validate" else suspended
                if lic is None:
                    return f"probe {probe.kind}: no such license provisioned"
                response = self.clients.post(routes.VALIDATE_UNIFIED, json=_validate(lic))
                body = response.json()
                if probe.kind == "validate":
                    ok = (
                        response.status_code == 200
                        and body["validation"]["valid"] is True
                        and not body.get("degraded")
                    )
                else:
                    ok = (
                        response.status_code == 403
                        and body.get("error", {}).get("code") == "SUBSCRIPTION_INACTIVE"
                    )
                problem = None if ok else f"probe {probe.kind}: answered {response.status_code}"
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            return f"probe {probe.kind}: {type(exc).__name__}"
        elapsed = (time.perf_counter() - started) * 1000
        if problem is None and elapsed > probe.max_latency_ms:
            problem = f"probe {probe.kind}: {elapsed:.0f} ms > {probe.max_latency_ms:g} ms"
        return problem

    # ------------------------------------------------------------------ the recording

    def _replica_params(self) -> dict[str, Any]:
        group = self.target.replicas
        if group is None:
            return {}
        front = group.proxy
        return {
            "replicas": len(group.processes),
            "replica_kills": list(self.replica_kills),
            "fresh_after_kill": list(self.fresh_after_kill),
            "front_spread": front.spread() if front is not None else [],
            "front_refused": front.refused() if front is not None else [],
            "replicas_dead_at_end": group.dead(),
        }

    def recording(self) -> Recording:
        if self._watch_sessions:
            self.sample_sessions()  # the last word, after the rollbacks
        return Recording(
            answers=sorted(self.load.answers(), key=lambda a: a.t),
            breaker=self.poller.samples(),
            faults=list(self.windows),
            clock_moves=list(self.moves),
            steps=list(self.steps),
            outbox=list(self.outbox),
            storms=list(self.storms),
            sessions=list(self.sessions),
            params={
                "breaker_threshold": self.reh.service.breaker_threshold,
                "breaker_open_seconds": self.reh.service.breaker_open_seconds,
                "users": self.reh.load.users,
                "licenses": self.reh.load.licenses,
                "suspended": self.reh.load.suspended,
                "target": self.target.base_url,
                "managed": self.target.managed,
                **self._replica_params(),
            },
            end=self.clock(),
        )


class _ReplicaKiller:
    """The storm's crasher for ``kill_replica``: kills that replica once, mid-storm,
    and does not restart it (the others go on)."""

    def __init__(self, run: _Run, replica: int) -> None:
        self.run = run
        self.replica = replica

    def kill(self) -> None:
        self.run.kill_replica(self.replica)

    def restart(self) -> None:
        """Nothing: the dead replica stays dead for the rest of the storm."""


def _service_env(reh: Rehearsal, sink: Path) -> dict[str, str]:
    """The started service's settings from the file's [service] table."""
    env = {
        "LH_BREAKER_THRESHOLD": str(reh.service.breaker_threshold),
        "LH_BREAKER_OPEN_SECONDS": str(reh.service.breaker_open_seconds),
        "LH_EMAIL_SINK": str(sink),
        # Drained often, so an outbox rehearsal sees it empty within a second.
        "LH_EMAIL_POLL_SECONDS": "0.2",
    }
    if reh.service.db_timeout_ms is not None:
        env["LH_DB_TIMEOUT_MS"] = str(reh.service.db_timeout_ms)
    if reh.service.breaker_slow_call_ms is not None:
        env["LH_BREAKER_SLOW_CALL_MS"] = str(reh.service.breaker_slow_call_ms)
    if reh.service.stripe_timeout_s is not None:
        env["LH_STRIPE_TIMEOUT_SECONDS"] = str(reh.service.stripe_timeout_s)
    return env


def _sink_counts(sink: Path | None) -> tuple[int, int]:
    """Lines in the email sink, and distinct emails among them (-1, -1: not ours)."""
    if sink is None:
        return -1, -1
    try:
        lines = sink.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return 0, 0
    ids = [json.loads(line).get("id") for line in lines if line.strip()]
    return len(ids), len(set(ids))


def _uses_proxy(reh: Rehearsal) -> bool:
    return any(type(s) is ProxyStep for s in (*reh.method, *reh.rollbacks))


def _address(base_url: str) -> tuple[str, int]:
    from urllib.parse import urlsplit

    parts = urlsplit(base_url)
    return parts.hostname or "127.0.0.1", parts.port or 80


def _proxy_for(upstream: tuple[str, int]) -> Any:
    from scenarios.proxy import FaultProxy  # only when a method uses it

    return FaultProxy(upstream=upstream)


def _validate(lic: LoadLicense) -> dict[str, Any]:
    return {
        "operation": "validate",
        "credentials": {"email": lic.email, "token": lic.token},
        "device": {"machineFingerprint": lic.fingerprint},
    }


__all__ = ["RunOptions", "ScenarioResult", "run_scenario"]
