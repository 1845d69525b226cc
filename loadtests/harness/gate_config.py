"""The release gate's configuration: a gate file's schema as typed models, and reading one.

Schema
======

A gate file has three top-level tables and nothing else; unknown keys anywhere are
errors, so a typo (``mx = 10``) can't silently disable a threshold::

    [load]                      # the run the gate makes; every key optional (defaults shown)
    workload = "mixed"          # validation | sessions | webhooks | mixed | open
    users = 50                  # Locust users (>= 1)
    spawn_rate = 50             # users started per second (> 0)
    duration = "60s"            # run time: "90s", "2m", "1m30s", "1h", or integer seconds (> 0)
    processes = 1               # Locust --processes: >= 1, or -1 for one per CPU core
    warmup = "10s"              # abort-early not judged before this (< duration if abort_early)
    abort_early = false         # stop the run as soon as a "max" threshold is violated
    open_rate = 200.0           # open model only: iterations started per second (> 0)
    customers = 500             # licenses provisioned for the run (>= 1)
    max_steal = 5.0             # % CPU steal above which a failed latency/rps is inconclusive

    [[threshold]]               # any number, judged in file order
    select = "validate"         # a request name, "tag:<tag>", or "*" (all requests)
    metric = "p99"              # see METRICS below
    max = 10.0                  # and/or min = ...; at least one; both means a range

    [checks]                    # live invariant checks: name = true/false
    cache_tiers = true          # a name left out is enabled: the gate is strict by default
    heartbeat_expiry = true
    conflict_takeover = true
    no_grace = true
    webhook_idempotency = true
    propagation = "0ms"         # the deployment's stated bound for a change to show on every
                                # replica ("100ms", "0.2s"; >= 0): within it, a check expecting
                                # a suspension/restoration asks again; "0ms" judges exactly

Metrics: ``p50 p90 p95 p99 p99.9 max mean`` are milliseconds over successful requests;
``corrected_<that>`` (e.g. ``corrected_p99``) is the same measured from each request's
*intended* send time, which only paced users record (coordinated omission); ``error_rate``
is failures / requests (0..1); ``rps`` is requests (successes and failures) per second.
How they are judged is :mod:`loadtests.harness.verdicts`.

Types are strict (``users = true`` is not 1, ``max = "10"`` is not 10). A refused file
raises :class:`ConfigError`, one line per problem, each naming the file, the key as a
dotted path (thresholds are numbered from 1: ``threshold[2].metric``) and what was
expected; pydantic's own wording, links and echo of the input stay out of it.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic import dataclasses as pydantic_dataclasses
from pydantic_core import PydanticCustomError

from loadtests.harness.config_messages import config_error, refuse, shown
from loadtests.harness.errors import ConfigError

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "gate.toml"

WORKLOADS = ("validation", "sessions", "webhooks", "mixed", "open")
LATENCY_METRICS = ("p50", "p90", "p95", "p99", "p99.9", "max", "mean")
CORRECTED_PREFIX = "corrected_"
METRICS = (
    *LATENCY_METRICS,
    *(CORRECTED_PREFIX + m for m in LATENCY_METRICS),
    "error_rate",
    "rps",
)
ALL = "*"
TAG_PREFIX = "tag:"

# Models built in code take field names (``duration_s``); a file may only use the file's
# names (``duration``): see ``parse_config``.
_MODEL = ConfigDict(extra="forbid", validate_by_name=True, validate_by_alias=True)


# --------------------------------------------------------------------------- field types


def _one_of(kind: str, names: Sequence[str]) -> AfterValidator:
    def check(value: str) -> str:
        if value not in names:
            raise refuse(f"unknown {kind} {shown(value)}; expected one of: {', '.join(names)}")
        return value

    return AfterValidator(check)


def _processes(value: int) -> int:
    if value == 0 or value < -1:
        raise refuse(f"must be >= 1, or -1 for one per core, not {value}")
    return value


def _not_an_empty_tag(select: str) -> str:
    if select.startswith(TAG_PREFIX) and not select.removeprefix(TAG_PREFIX):
        raise refuse('empty tag; write e.g. "tag:licensing"')
    return select


# Locust's --run-time grammar: whole hours, minutes and seconds, in that order.
_DURATION = re.compile(r"(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?")


def _seconds_in(text: str) -> int:
    if text.strip().startswith("-"):
        raise refuse(f"negative duration {shown(text)}")
    match = _DURATION.fullmatch(text)
    if not text or match is None:
        raise refuse(f'unparseable duration {shown(text)}; write e.g. "90s", "2m", "1m30s"')
    hours, minutes, seconds = (int(match.group(g) or 0) for g in ("h", "m", "s"))
    return hours * 3600 + minutes * 60 + seconds


def _duration(value: object) -> object:
    if isinstance(value, bool):
        pass  # an int to Python, but "warmup = true" is no duration
    elif isinstance(value, int):
        if value < 0:
            raise refuse(f"negative duration {value}")
        return value
    elif isinstance(value, str):
        return _seconds_in(value)
    raise refuse(f'must be a duration like "90s", "2m" or "1m30s", not {shown(value)}')


# A propagation bound: milliseconds or seconds, fractions allowed ("100ms", "0.2s").
_MILLIS = re.compile(r"(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>ms|s)")


def _millis_in(text: str) -> float:
    if text.strip().startswith("-"):
        raise refuse(f"negative duration {shown(text)}")
    match = _MILLIS.fullmatch(text.strip())
    if match is None:
        raise refuse(f'unparseable duration {shown(text)}; write e.g. "100ms", "0ms" or "0.2s"')
    n = float(match.group("n"))
    return n if match.group("unit") == "ms" else n * 1000


def _millis(value: object) -> object:
    if isinstance(value, str):
        return _millis_in(value)
    raise refuse(f'must be a duration like "100ms", "0ms" or "0.2s", not {shown(value)}')


def parse_millis(text: str, key: str) -> float:
    """Milliseconds in "100ms", "0.2s"; ConfigError naming ``key`` otherwise."""
    try:
        return _millis_in(text)
    except PydanticCustomError as exc:
        raise ConfigError(key, exc.message()) from None


def parse_duration(text: str, key: str = "duration") -> int:
    """Seconds in "90s", "2m", "1m30s", "1h"; ConfigError naming ``key`` otherwise."""
    try:
        return _seconds_in(text)
    except PydanticCustomError as exc:
        raise ConfigError(key, exc.message()) from None


Positive = Annotated[StrictFloat, Field(gt=0, allow_inf_nan=False)]
Seconds = Annotated[int, BeforeValidator(_duration)]
Millis = Annotated[float, BeforeValidator(_millis)]
Bound = Annotated[StrictFloat, Field(ge=0, allow_inf_nan=False)]
Name = Annotated[StrictStr, Field(min_length=1)]


# --------------------------------------------------------------------------- the models


@pydantic_dataclasses.dataclass(frozen=True, slots=True, config=_MODEL)
class LoadConfig:
    """``[load]``: the run the gate makes."""

    workload: Annotated[StrictStr, _one_of("workload", WORKLOADS)] = "mixed"
    users: Annotated[StrictInt, Field(ge=1)] = 50
    spawn_rate: Positive = 50.0
    duration_s: Annotated[Seconds, Field(gt=0, validation_alias="duration")] = 60
    processes: Annotated[StrictInt, AfterValidator(_processes)] = 1
    warmup_s: Annotated[Seconds, Field(validation_alias="warmup")] = 10
    abort_early: StrictBool = False
    open_rate: Positive = 200.0
    customers: Annotated[StrictInt, Field(ge=1)] = 500
    # CPU steal (% of the machine's time taken by the hypervisor) above which a
    # failed latency or throughput threshold is reported inconclusive (exit 2),
    # not failed: on a shared machine, a steal burst is not a regression.
    max_steal_pct: Annotated[Positive, Field(validation_alias="max_steal")] = 5.0

    @model_validator(mode="after")
    def _abort_can_fire(self) -> Self:
        if self.abort_early and self.warmup_s >= self.duration_s:
            # Otherwise abort-early is switched on but could never fire.
            raise refuse("must be shorter than load.duration when abort_early", at=("warmup",))
        return self


@pydantic_dataclasses.dataclass(frozen=True, slots=True, config=_MODEL)
class Threshold:
    """One ``[[threshold]]``: a bound on a metric over a selection of requests."""

    select: Annotated[Name, AfterValidator(_not_an_empty_tag)]
    metric: Annotated[Name, _one_of("metric", METRICS)]
    max: Bound | None = None
    min: Bound | None = None

    @field_validator("min")
    @classmethod
    def _not_above_max(cls, value: float | None, info: ValidationInfo) -> float | None:
        high = info.data.get("max")
        if value is not None and high is not None and value > high:
            raise refuse(f"min {value:g} is above max {high:g}")
        return value

    @model_validator(mode="after")
    def _bounded(self) -> Self:
        if self.max is None and self.min is None:
            raise refuse("needs max or min (or both)")
        return self

    @property
    def is_latency(self) -> bool:
        return self.metric not in ("error_rate", "rps")

    @property
    def expected(self) -> str:
        """The bound as people read it: "<= 10 ms", ">= 100/s", "5..10 ms"."""
        unit = metric_unit(self.metric)
        if self.max is not None and self.min is not None:
            return f"{self.min:g}..{self.max:g}{unit}"
        if self.max is not None:
            return f"<= {self.max:g}{unit}"
        return f">= {self.min:g}{unit}"

    @property
    def label(self) -> str:
        return f"{self.select} {self.metric} {self.expected}"


def metric_unit(metric: str) -> str:
    if metric == "rps":
        return "/s"
    if metric == "error_rate":
        return ""
    return " ms"


class ChecksTable(BaseModel):
    """``[checks]``: a check left out is enabled, so the gate is strict by default;
    ``propagation`` is no check but how long a change may take to show everywhere."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_by_name=True, validate_by_alias=True
    )

    cache_tiers: StrictBool = True
    heartbeat_expiry: StrictBool = True
    conflict_takeover: StrictBool = True
    no_grace: StrictBool = True
    webhook_idempotency: StrictBool = True
    # The deployment's stated bound for a change (a suspension, a restoration) to
    # show on every replica; 0: on the very next request (one process).
    propagation_ms: Annotated[Millis, Field(validation_alias="propagation")] = 0.0

    def enabled(self) -> dict[str, bool]:
        return {name: getattr(self, name) for name in KNOWN_CHECKS}


KNOWN_CHECKS = tuple(n for n in ChecksTable.model_fields if n != "propagation_ms")


@dataclass(frozen=True, slots=True)
class GateConfig:
    """What the gate runs and judges: a file's tables, or built in code (tests)."""

    load: LoadConfig
    thresholds: tuple[Threshold, ...]
    checks: dict[str, bool] = field(default_factory=dict)
    propagation_ms: float = 0.0  # [checks].propagation

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class GateFile(BaseModel):
    """A whole gate file, as written."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    load: LoadConfig = LoadConfig()
    threshold: tuple[Threshold, ...] = ()
    checks: ChecksTable = ChecksTable()

    @model_validator(mode="after")
    def _error_rates_are_fractions(self) -> Self:
        # A file's typo guard (5 meant as 5 %), not a Threshold's invariant: in code, a
        # bound above 1 is merely one that always holds.
        for n, t in enumerate(self.threshold):
            for key, bound in (("max", t.max), ("min", t.min)):
                if t.metric == "error_rate" and bound is not None and bound > 1:
                    problem = f"error_rate is a fraction 0..1, not {bound:g}"
                    raise refuse(problem, at=("threshold", n, key))
        return self

    @model_validator(mode="after")
    def _judges_something(self) -> Self:
        if not self.threshold and not any(self.checks.enabled().values()):
            nothing = "no thresholds and no checks enabled: the gate would judge nothing"
            raise refuse(nothing, at=("threshold",))
        return self

    def config(self) -> GateConfig:
        checks = self.checks
        return GateConfig(self.load, self.threshold, checks.enabled(), checks.propagation_ms)


# --------------------------------------------------------------------------- reading


def load_config(path: Path | None = None) -> GateConfig:
    """Read a gate file (None: the packaged ``loadtests/gate.toml``)."""
    path = DEFAULT_CONFIG if path is None else path
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("(file)", f"cannot read: {exc}", source=str(path)) from exc
    try:
        return loads_config(text)
    except ConfigError as exc:
        raise exc.in_file(str(path)) from exc


def loads_config(text: str) -> GateConfig:
    """Parse a gate file's text."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("(toml)", f"not valid TOML: {exc}") from exc
    return parse_config(data)


def parse_config(data: Mapping[str, Any]) -> GateConfig:
    """Validate an already-decoded gate file strictly."""
    try:
        # By alias only: a file says `duration`, never the field's name `duration_s`.
        gate = GateFile.model_validate(data, by_alias=True, by_name=False)
    except ValidationError as exc:
        raise config_error(exc, _FILE_KEYS) from None
    return gate.config()


def with_load(config: GateConfig, **changes: Any) -> GateConfig:
    """``config`` with some ``[load]`` values replaced (the command line's overrides),
    checked as the file's are: ``--duration 5s`` may break ``load.warmup``'s rule."""
    try:
        return replace(config, load=replace(config.load, **changes))
    except ValidationError as exc:
        names = _file_names(LoadConfig)
        raise config_error(exc, _FILE_KEYS, within=("load",), file_names=names) from None


def _file_names(model: Any) -> dict[str, str]:
    """Each field's name in a file (its alias, if any)."""
    fields: dict[str, Any] = getattr(model, "__pydantic_fields__", None) or model.model_fields
    return {name: f.validation_alias or name for name, f in fields.items()}


def _file_keys(model: Any) -> tuple[str, ...]:
    """The keys a table allows, as a file spells them."""
    return tuple(_file_names(model).values())


_FILE_KEYS = {
    "": _file_keys(GateFile),
    "load": _file_keys(LoadConfig),
    "threshold": _file_keys(Threshold),
    "checks": _file_keys(ChecksTable),
}


__all__ = [
    "ALL",
    "CORRECTED_PREFIX",
    "DEFAULT_CONFIG",
    "KNOWN_CHECKS",
    "LATENCY_METRICS",
    "METRICS",
    "TAG_PREFIX",
    "WORKLOADS",
    "ChecksTable",
    "ConfigError",
    "GateConfig",
    "GateFile",
    "LoadConfig",
    "Threshold",
    "load_config",
    "loads_config",
    "metric_unit",
    "parse_config",
    "parse_duration",
    "parse_millis",
    "with_load",
]
