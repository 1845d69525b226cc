"""A rehearsal file's schema as typed models, and reading one.

A rehearsal is data, as in Chaos Toolkit: a steady-state hypothesis (probes with
tolerances), a method (steps), rollbacks that always run, and expectations
judged on what was recorded::

    [scenario]
    name = "db-outage"                 # a slug; the file's stem by convention
    description = "..."
    needs = ["faults", "test_clock"]   # what the target must offer (checked against the method)
    max_duration = "2m"                # the whole rehearsal is stopped (exit 2) past this

    [service]                          # the reference service the runner starts
    breaker_threshold = 5              # LH_BREAKER_THRESHOLD
    breaker_open_seconds = 30          # LH_BREAKER_OPEN_SECONDS
    breaker_slow_call_ms = 50          # LH_BREAKER_SLOW_CALL_MS (unset: slow calls not judged)
    stripe_api = false                 # start a local Stripe API for checkout and portal
    db_timeout_ms = 200                # LH_DB_TIMEOUT_MS: a slow database fails past this
    stripe_timeout_s = 1               # LH_STRIPE_TIMEOUT_SECONDS
    store = "postgresql"               # sqlite (default) | postgresql: a database of the run's own
    replicas = 3                       # that many service processes behind one address (postgresql)
    db_proxy = true                    # a fault proxy between the service and PostgreSQL

    [load]                             # the recording load (loadtests.rehearsal_load)
    users = 50
    think_ms = 150
    timeout_ms = 2000
    licenses = 200                     # active licenses provisioned
    suspended = 20                     # and suspended ones (a failed invoice each)
    mix = { validate = 8, suspended = 1, session = 1 }

    [fast]                             # --fast: the CI variant
    users = 6
    licenses = 30
    suspended = 5
    time_scale = 0.3                   # every wait's seconds multiplied by this

    [[steady_state.probe]]
    kind = "validate"                  # health | validate | suspended
    max_latency_ms = 500

    [[method]]
    kind = "fault"                     # see scenarios.steps for every kind and its keys
    db = { errors = true }

    [[rollbacks]]
    kind = "fault"
    clear = true

    [[expect]]
    kind = "breaker_opens"             # see scenarios.expectations

Types are strict and unknown keys are errors everywhere. A refused file raises
:class:`ConfigError` naming the file, the dotted key (``method[3].db.errorz``) and
what was expected, worded by :mod:`loadtests.harness.config_messages` as the
gate's files are.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)

from loadtests.harness.config_messages import config_error, refuse
from loadtests.harness.errors import ConfigError
from loadtests.harness.gate_config import Seconds
from loadtests.rehearsal_load import OPERATIONS
from scenarios import expectations, steps

NEEDS = ("faults", "test_clock", "process", "postgresql")
_STRICT = ConfigDict(extra="forbid", frozen=True)  # strict per field (Strict*): arrays stay tuples
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]*$")


def _slug(value: str) -> str:
    if not _SLUG.fullmatch(value):
        raise refuse("must be lower-case letters, digits and dashes, like 'db-outage'")
    return value


class ScenarioTable(BaseModel):
    model_config = _STRICT

    name: Annotated[StrictStr, AfterValidator(_slug)]
    description: StrictStr = ""
    needs: tuple[Literal["faults", "test_clock", "process", "postgresql"], ...] = ()
    max_duration_s: Annotated[Seconds, Field(gt=0, le=3600, alias="max_duration")] = 120


class ServiceTable(BaseModel):
    model_config = _STRICT

    breaker_threshold: Annotated[StrictInt, Field(ge=1, le=1_000_000_000)] = 5
    breaker_open_seconds: Annotated[StrictInt, Field(ge=1, le=86_400)] = 30
    stripe_api: StrictBool = False
    db_timeout_ms: Annotated[StrictInt, Field(ge=1, le=60_000)] | None = None  # LH_DB_TIMEOUT_MS
    # LH_BREAKER_SLOW_CALL_MS: a database call this slow counts as a breaker failure.
    breaker_slow_call_ms: Annotated[StrictInt, Field(ge=1, le=60_000)] | None = None
    # LH_STRIPE_TIMEOUT_SECONDS: how long a checkout waits on a silent Stripe.
    stripe_timeout_s: Annotated[StrictFloat | StrictInt, Field(gt=0, le=120)] | None = None
    # postgresql: the service on a database of the run's own (scenarios.pg_admin).
    store: Literal["sqlite", "postgresql"] = "sqlite"
    # More than one: that many processes on the database, behind one round-robin
    # address (scenarios.replicas) that the load and the probes use.
    replicas: Annotated[StrictInt, Field(ge=1, le=8)] = 1
    # A FaultProxy between the service and PostgreSQL (the `db_proxy` step).
    db_proxy: StrictBool = False

    @model_validator(mode="after")
    def _on_postgresql(self) -> Self:
        if self.store != "postgresql":
            if self.replicas > 1:
                raise refuse('several replicas need store = "postgresql"', at=("replicas",))
            if self.db_proxy:
                raise refuse('a proxy in front of the database needs store = "postgresql"')
        return self


Weight = Annotated[StrictFloat | StrictInt, Field(ge=0)]


class MixTable(BaseModel):
    model_config = _STRICT

    validate_: Annotated[Weight, Field(alias="validate")] = 1
    suspended: Weight = 0
    session: Weight = 0
    webhook: Weight = 0
    signup: Weight = 0
    checkout: Weight = 0
    portal: Weight = 0

    def weights(self) -> dict[str, float]:
        return {op: float(self.model_dump(by_alias=True)[op]) for op in OPERATIONS}

    @model_validator(mode="after")
    def _something(self) -> Self:
        if not any(self.weights().values()):
            raise refuse("every weight is 0: the load would send nothing")
        return self


class LoadTable(BaseModel):
    model_config = _STRICT

    users: Annotated[StrictInt, Field(ge=1, le=500)] = 10
    think_ms: Annotated[StrictInt, Field(ge=0, le=60_000)] = 20
    timeout_ms: Annotated[StrictInt, Field(ge=1, le=60_000)] = 2000
    licenses: Annotated[StrictInt, Field(ge=1, le=100_000)] = 50
    suspended: Annotated[StrictInt, Field(ge=0, le=100_000)] = 10
    mix: MixTable = MixTable()


class FastTable(BaseModel):
    model_config = _STRICT

    users: Annotated[StrictInt, Field(ge=1, le=500)] | None = None
    licenses: Annotated[StrictInt, Field(ge=1, le=100_000)] | None = None
    suspended: Annotated[StrictInt, Field(ge=0, le=100_000)] | None = None
    think_ms: Annotated[StrictInt, Field(ge=0, le=60_000)] | None = None
    time_scale: Annotated[StrictFloat, Field(gt=0, le=1)] = 1.0


class Probe(BaseModel):
    model_config = _STRICT

    kind: Literal["health", "validate", "suspended"]
    max_latency_ms: Annotated[StrictFloat | StrictInt, Field(gt=0, le=60_000)] = 1000


class SteadyState(BaseModel):
    model_config = _STRICT

    probe: tuple[Probe, ...] = ()


class RehearsalFile(BaseModel):
    """The file as written; steps and expectations stay tables until their kind
    is known (each kind has its own keys: :func:`_typed`)."""

    model_config = _STRICT

    scenario: ScenarioTable
    service: ServiceTable = ServiceTable()
    load: LoadTable = LoadTable()
    fast: FastTable = FastTable()
    steady_state: SteadyState = SteadyState()
    method: tuple[dict[str, Any], ...]
    rollbacks: tuple[dict[str, Any], ...] = ()
    expect: tuple[dict[str, Any], ...]

    @model_validator(mode="after")
    def _not_empty(self) -> Self:
        if not self.method:
            raise refuse("an empty method rehearses nothing", at=("method",))
        if not self.expect:
            raise refuse("no expectations: the rehearsal would judge nothing", at=("expect",))
        return self


@dataclass(frozen=True, slots=True)
class Rehearsal:
    """A rehearsal as the runner uses it: every step and expectation typed."""

    source: str
    scenario: ScenarioTable
    service: ServiceTable
    load: LoadTable
    fast: FastTable
    probes: tuple[Probe, ...]
    method: tuple[steps.Step, ...]
    rollbacks: tuple[steps.Step, ...]
    expect: tuple[expectations.Expectation, ...]

    @property
    def name(self) -> str:
        return self.scenario.name

    def needs(self) -> frozenset[str]:
        return frozenset(self.scenario.needs)

    def fast_variant(self) -> Rehearsal:
        """The CI variant: fewer users and licenses, every wait scaled down."""
        f = self.fast
        load = self.load.model_copy(
            update={
                k: v
                for k, v in (
                    ("users", f.users),
                    ("licenses", f.licenses),
                    ("suspended", f.suspended),
                    ("think_ms", f.think_ms),
                )
                if v is not None
            }
        )
        scale = f.time_scale
        return replace(
            self,
            load=load,
            method=tuple(s.scaled(scale) for s in self.method),
            rollbacks=tuple(s.scaled(scale) for s in self.rollbacks),
        )


# --------------------------------------------------------------------------- reading


def load_rehearsal(path: Path) -> Rehearsal:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("(file)", f"cannot read: {exc}", source=str(path)) from exc
    try:
        return loads_rehearsal(text, source=str(path))
    except ConfigError as exc:
        raise exc.in_file(str(path)) from exc


def loads_rehearsal(text: str, source: str = "(text)") -> Rehearsal:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("(toml)", f"not valid TOML: {exc}") from exc
    return parse_rehearsal(data, source)


def parse_rehearsal(data: Mapping[str, Any], source: str = "(data)") -> Rehearsal:
    """Validate a decoded file: every problem at once, each naming its key."""
    try:
        raw = RehearsalFile.model_validate(data, by_alias=True, by_name=False)
    except ValidationError as exc:
        raise config_error(exc, FILE_KEYS) from None
    problems: list[tuple[str, str]] = []
    method = _typed(raw.method, "method", steps.STEP_KINDS, problems)
    rollbacks = _typed(raw.rollbacks, "rollbacks", steps.STEP_KINDS, problems)
    expect = _typed(raw.expect, "expect", expectations.EXPECTATION_KINDS, problems)
    if not problems:
        problems.extend(_needs_problems(raw.scenario, (*method, *rollbacks), expect, raw.service))
        problems.extend(_service_problems(raw.service, (*method, *rollbacks)))
    if problems:
        (key, problem), *more = problems
        raise ConfigError(key, problem, more=more)
    return Rehearsal(
        source=source,
        scenario=raw.scenario,
        service=raw.service,
        load=raw.load,
        fast=raw.fast,
        probes=raw.steady_state.probe,
        method=tuple(method),
        rollbacks=tuple(rollbacks),
        expect=tuple(expect),
    )


def _typed(
    tables: Sequence[Mapping[str, Any]],
    where: str,
    kinds: Mapping[str, type[BaseModel]],
    problems: list[tuple[str, str]],
) -> list[Any]:
    """Each table validated by the model of its ``kind``; problems collected."""
    typed = []
    for n, table in enumerate(tables):
        at = f"{where}[{n + 1}]"
        kind = table.get("kind")
        if not isinstance(kind, str):
            problems.append((f"{at}.kind", f"missing; expected one of: {', '.join(kinds)}"))
            continue
        model = kinds.get(kind)
        if model is None:
            problems.append(
                (f"{at}.kind", f"unknown kind {kind!r}; expected one of: {', '.join(kinds)}")
            )
            continue
        unavailable = getattr(model, "unavailable", None)
        reason = unavailable() if callable(unavailable) else None
        if reason:
            problems.append((f"{at}.kind", f"{kind!r} is not available yet: {reason}"))
            continue
        try:
            typed.append(model.model_validate(table, by_alias=True, by_name=False))
        except ValidationError as exc:
            keys = {where: _keys(model), **_nested_keys(model)}
            err = config_error(exc, keys, within=(where, n))
            problems.extend(((err.key, err.problem), *err.more))
    return typed


def _needs_problems(
    scenario: ScenarioTable,
    all_steps: Sequence[steps.Step],
    expect: Sequence[expectations.Expectation],
    service: ServiceTable,
) -> list[tuple[str, str]]:
    """A method that moves the clock must say it needs the test clock, so a
    --target run skips it rather than failing halfway (and one on PostgreSQL
    that it needs PostgreSQL, so a machine without it skips it)."""
    declared = set(scenario.needs)
    needed: set[str] = {"postgresql"} if service.store == "postgresql" else set()
    for step in all_steps:
        needed |= step.needs()
    for e in expect:
        needed |= e.needs()
    missing = sorted(needed - declared)
    if not missing:
        return []
    return [
        (
            "scenario.needs",
            f"the method or expectations use {', '.join(missing)}; add"
            f" {', '.join(repr(m) for m in missing)} to needs",
        )
    ]


def _service_problems(
    service: ServiceTable, all_steps: Sequence[steps.Step]
) -> list[tuple[str, str]]:
    """Steps that act on what only some [service] tables start."""
    problems = []
    for step in all_steps:
        if isinstance(step, steps.DbProxyStep) and not service.db_proxy:
            problems.append(("service.db_proxy", "a db_proxy step needs db_proxy = true"))
        replica = getattr(step, "kill_replica", None) or getattr(step, "replica", None)
        if replica is not None and not 1 <= replica < service.replicas:
            problems.append(
                (
                    "service.replicas",
                    f"a step names replica {replica}; with {service.replicas} replica(s) it must"
                    f" be 1 to {service.replicas - 1} (replica 0 takes the fault and clock"
                    " controls and is never killed)",
                )
            )
    return sorted(set(problems))


def _keys(model: type[BaseModel]) -> tuple[str, ...]:
    return tuple(f.alias or name for name, f in model.model_fields.items())


def _nested_keys(model: type[BaseModel]) -> dict[str, tuple[str, ...]]:
    """The keys of the tables inside a step (``db``, ``stripe``...), by their key."""
    nested: dict[str, tuple[str, ...]] = {}
    for name, f in model.model_fields.items():
        for arg in getattr(f.annotation, "__args__", (f.annotation,)):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                nested[f.alias or name] = _keys(arg)
    return nested


FILE_KEYS: dict[str, tuple[str, ...]] = {
    "": _keys(RehearsalFile),
    "scenario": _keys(ScenarioTable),
    "service": _keys(ServiceTable),
    "load": _keys(LoadTable),
    "mix": _keys(MixTable),
    "fast": _keys(FastTable),
    "steady_state": _keys(SteadyState),
    "probe": _keys(Probe),
}

__all__ = [
    "NEEDS",
    "ConfigError",
    "Probe",
    "Rehearsal",
    "RehearsalFile",
    "load_rehearsal",
    "loads_rehearsal",
    "parse_rehearsal",
]
