"""The step kinds of a rehearsal's method and rollbacks: each a typed table and what it does.

A step acts only through :class:`Controls`, which the runner implements on the
target it drives; the steps know nothing of HTTP, processes or the fault route.

Kinds and their keys (besides ``kind`` and an optional ``label``):

- ``fault``: ``clear``, ``db``, ``stripe``, ``email``, ``webhook``, the contract's
  ``FaultsRequest`` (:mod:`licensing_service.contract.faults`): faults on the service;
- ``load``: ``action`` = start / stop: the recording load;
- ``clock``: ``advance`` (seconds): moves the service's test clock;
- ``wait``: ``seconds``, ``until`` (breaker_open, breaker_closed, outbox_drained,
  db_answers):
  waits, at most ``seconds``;
- ``proxy``: ``latency_ms``, ``reset``, ``blackhole``: the TCP fault proxy in front
  of the service (:mod:`scenarios.proxy`);
- ``storm``: ``events``, ``seed``, ``duplicates``, ``outage`` (webhook, db, none),
  ``outage_start_s``, ``outage_s``, ``kills``, ``deadline_s``: a webhook storm
  from the fake Stripe with its oracle (:mod:`scenarios.storm`);
- ``db_proxy``: ``latency_ms``, ``reset``, ``blackhole``: the same proxy between
  the service and PostgreSQL (``[service] db_proxy = true``): the database made
  unreachable without touching the server (others' databases live on it);
- ``storm``: ``outage = "db_proxy"`` resets every connection to PostgreSQL for the
  outage instead; ``kill_replica`` = N kills replica N (``[service] replicas``)
  -9 in the middle of the storm and leaves it dead: the others go on;
- ``kill`` and ``restart``: kill -9 the service the runner started, and start it
  again on the same database; ``replica`` = N: that replica only.

``proxy``, ``storm``, ``kill`` and ``restart`` need modules (``scenarios.proxy``,
``scenarios.storm``, ``scenarios.crash``) from the storms work: while one is not
in the tree, a file using its step is refused at load time, naming the step,
"not available yet".
"""

from __future__ import annotations

import importlib.util
from typing import Annotated, ClassVar, Literal, Protocol, Self

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

from licensing_service.contract.faults import (
    MAX_LATENCY_MS,
    DbFault,
    EmailFault,
    FaultsRequest,
    StripeFault,
    WebhookFault,
)

MAX_WAIT_S = 600.0
# db_answers: the service's /health finds its database answering again (its
# pool has reconnected), whatever the breaker says.
Conditions = Literal["breaker_open", "breaker_closed", "outbox_drained", "db_answers"]


class StepFailed(RuntimeError):
    """A step could not be carried out (the target refused it): the rehearsal stops."""


class Controls(Protocol):
    """What steps may do to the target; the runner implements it."""

    def set_faults(self, request: FaultsRequest) -> list[str]: ...
    def start_load(self) -> None: ...
    def stop_load(self) -> None: ...
    def advance_clock(self, seconds: float) -> None: ...
    def wait(self, seconds: float, until: str | None) -> bool: ...
    def set_proxy(self, latency_ms: int, reset: bool, blackhole: bool) -> None: ...
    def storm(self, step: StormStep) -> str: ...
    def set_db_proxy(self, latency_ms: int, reset: bool, blackhole: bool) -> None: ...
    def kill(self, replica: int | None) -> None: ...
    def restart(self, replica: int | None) -> None: ...


class _Step(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)  # strict per field
    requires: ClassVar[frozenset[str]] = frozenset()
    module: ClassVar[str | None] = None  # a module the kind needs in this tree

    label: StrictStr = ""

    @classmethod
    def unavailable(cls) -> str | None:
        if cls.module is None or importlib.util.find_spec(cls.module) is not None:
            return None
        return f"{cls.module} is not in this build (it comes with the webhook-storm work)"

    def needs(self) -> frozenset[str]:
        return self.requires

    def scaled(self, factor: float) -> Self:
        del factor
        return self

    def describe(self) -> str:
        return self.label or str(getattr(self, "kind", "step"))

    def run(self, controls: Controls) -> str:
        raise NotImplementedError


class FaultStep(_Step):
    kind: Literal["fault"]
    clear: StrictBool = False
    db: DbFault | None = None
    stripe: StripeFault | None = None
    email: EmailFault | None = None
    webhook: WebhookFault | None = None
    requires: ClassVar[frozenset[str]] = frozenset({"faults"})

    def request(self) -> FaultsRequest:
        return FaultsRequest(
            clear=self.clear, db=self.db, stripe=self.stripe, email=self.email, webhook=self.webhook
        )

    def describe(self) -> str:
        if self.label:
            return self.label
        parts = ["clear"] if self.clear else []
        for name in ("db", "stripe", "email", "webhook"):
            fault = getattr(self, name)
            if fault is not None:
                on = [k for k, v in fault.model_dump().items() if v]
                parts.append(f"{name}: {', '.join(on) or 'off'}")
        return "fault " + "; ".join(parts)

    def run(self, controls: Controls) -> str:
        active = controls.set_faults(self.request())
        return f"active: {', '.join(active) or 'none'}"


class LoadStep(_Step):
    kind: Literal["load"]
    action: Literal["start", "stop"]

    def describe(self) -> str:
        return self.label or f"load {self.action}"

    def run(self, controls: Controls) -> str:
        if self.action == "start":
            controls.start_load()
        else:
            controls.stop_load()
        return ""


class ClockStep(_Step):
    kind: Literal["clock"]
    advance: Annotated[StrictFloat | StrictInt, Field(gt=0, le=10 * 365 * 86400)]
    requires: ClassVar[frozenset[str]] = frozenset({"test_clock"})

    def describe(self) -> str:
        return self.label or f"clock +{self.advance:g}s"

    def run(self, controls: Controls) -> str:
        controls.advance_clock(float(self.advance))
        return ""


class WaitStep(_Step):
    kind: Literal["wait"]
    seconds: Annotated[StrictFloat | StrictInt, Field(gt=0, le=MAX_WAIT_S)]
    until: Conditions | None = None

    def scaled(self, factor: float) -> Self:
        if self.until is not None:
            return self  # a bound, not a duration: scaling it would only fail sooner
        return self.model_copy(update={"seconds": max(0.1, float(self.seconds) * factor)})

    def needs(self) -> frozenset[str]:
        return frozenset({"test_clock"}) if self.until == "outbox_drained" else frozenset()

    def describe(self) -> str:
        if self.label:
            return self.label
        return (
            f"wait until {self.until} (<= {self.seconds:g}s)"
            if self.until
            else f"wait {self.seconds:g}s"
        )

    def run(self, controls: Controls) -> str:
        met = controls.wait(float(self.seconds), self.until)
        if self.until is None:
            return ""
        # Not met is no step failure: the expectations judge what the service did.
        return "met" if met else f"not met within {self.seconds:g}s"


class ProxyStep(_Step):
    kind: Literal["proxy"]
    latency_ms: Annotated[StrictInt, Field(ge=0, le=MAX_LATENCY_MS)] = 0
    reset: StrictBool = False
    blackhole: StrictBool = False
    module: ClassVar[str | None] = "scenarios.proxy"

    def describe(self) -> str:
        on = [f"latency {self.latency_ms} ms"] if self.latency_ms else []
        on += [name for name in ("reset", "blackhole") if getattr(self, name)]
        return self.label or f"proxy {', '.join(on) or 'clear'}"

    def run(self, controls: Controls) -> str:
        controls.set_proxy(self.latency_ms, self.reset, self.blackhole)
        return ""


class DbProxyStep(ProxyStep):
    kind: Literal["db_proxy"]  # type: ignore[assignment]
    requires: ClassVar[frozenset[str]] = frozenset({"postgresql"})

    def describe(self) -> str:
        return self.label or "database " + super().describe()

    def run(self, controls: Controls) -> str:
        controls.set_db_proxy(self.latency_ms, self.reset, self.blackhole)
        return ""


class StormStep(_Step):
    """A webhook storm with its oracle (:func:`scenarios.storm.run_storm`): the
    storm moves the test clock itself, switches its outage on and off at its
    clock times, and retries as Stripe does; ``kills`` > 0 kills the service -9
    that many times mid-storm and restarts it on the same database."""

    kind: Literal["storm"]
    events: Annotated[StrictInt, Field(ge=1, le=1_000_000)] = 10_000
    seed: StrictInt = 1
    duplicates: Annotated[StrictFloat | StrictInt, Field(ge=0, le=1)] = 0.3
    outage: Literal["webhook", "db", "db_proxy", "none"] = "webhook"
    outage_start_s: Annotated[StrictFloat | StrictInt, Field(ge=0)] = 120
    outage_s: Annotated[StrictFloat | StrictInt, Field(ge=0)] = 120  # test-clock seconds
    kills: Annotated[StrictInt, Field(ge=0, le=100)] = 0
    kill_replica: Annotated[StrictInt, Field(ge=1, le=7)] | None = None
    deadline_s: Annotated[StrictFloat | StrictInt, Field(gt=0, le=3600)] = 900
    module: ClassVar[str | None] = "scenarios.storm"
    requires: ClassVar[frozenset[str]] = frozenset({"test_clock", "faults"})

    def needs(self) -> frozenset[str]:
        more = {"process"} if self.kills or self.kill_replica else set()
        if self.outage == "db_proxy" or self.kill_replica:
            more.add("postgresql")
        return self.requires | more

    def scaled(self, factor: float) -> Self:
        # --fast: fewer events, as fewer seconds for a wait (the outage stays
        # two minutes of test clock, which costs no wall time).
        return self.model_copy(update={"events": max(self.kills + 1, int(self.events * factor))})

    def describe(self) -> str:
        if self.label:
            return self.label
        outage = "" if self.outage == "none" or not self.outage_s else f", {self.outage} outage"
        kills = f", {self.kills} kills" if self.kills else ""
        if self.kill_replica:
            kills += f", replica {self.kill_replica} killed"
        return f"storm of {self.events} events{outage}{kills}"

    def run(self, controls: Controls) -> str:
        return controls.storm(self)


class KillStep(_Step):
    kind: Literal["kill"]
    replica: Annotated[StrictInt, Field(ge=1, le=7)] | None = None
    module: ClassVar[str | None] = "scenarios.crash"
    requires: ClassVar[frozenset[str]] = frozenset({"process"})

    def describe(self) -> str:
        return self.label or ("kill" if self.replica is None else f"kill replica {self.replica}")

    def run(self, controls: Controls) -> str:
        controls.kill(self.replica)
        return ""


class RestartStep(_Step):
    kind: Literal["restart"]
    replica: Annotated[StrictInt, Field(ge=1, le=7)] | None = None
    module: ClassVar[str | None] = "scenarios.crash"
    requires: ClassVar[frozenset[str]] = frozenset({"process"})

    def describe(self) -> str:
        return self.label or (
            "restart" if self.replica is None else f"restart replica {self.replica}"
        )

    def run(self, controls: Controls) -> str:
        controls.restart(self.replica)
        return ""


Step = (
    FaultStep
    | LoadStep
    | ClockStep
    | WaitStep
    | ProxyStep
    | DbProxyStep
    | StormStep
    | KillStep
    | RestartStep
)

STEP_KINDS: dict[str, type[BaseModel]] = {
    model.model_fields["kind"].annotation.__args__[0]: model for model in Step.__args__
}

__all__ = [
    "STEP_KINDS",
    "ClockStep",
    "Controls",
    "DbProxyStep",
    "FaultStep",
    "KillStep",
    "LoadStep",
    "ProxyStep",
    "RestartStep",
    "Step",
    "StepFailed",
    "StormStep",
    "WaitStep",
]
