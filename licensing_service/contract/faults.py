"""The fault-injection contract: what a rehearsal may switch on, and how it reads back.

Present only on a server in harness mode (``serve --test-clock``, refused in
production). ``POST /__harness__/faults`` replaces the fault of each target it
names and leaves the others as they are; ``{"clear": true}`` first turns every
fault off. One exception: ``webhook.fail_once`` ids are one-shot tokens, so a
POST adds them to those still pending (each is consumed by its one failure)
and only ``clear`` drops them; a POST naming ``webhook`` still replaces
``reject``. ``GET`` reads the current faults. Faults are per process: with
``--workers N`` each worker has its own. ``/health`` lists the active ones
under ``faults`` and ``/metrics`` exposes ``licensing_fault_active{fault=...}``.

Unknown keys are refused (unlike the device-facing requests, which tolerate
extras from deployed clients): a typo in a rehearsal must not silently inject
nothing.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

MAX_LATENCY_MS = 60_000  # a minute per call is an outage, not latency
FAULT_TARGETS = ("db", "stripe", "email", "webhook")


class _Fault(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


LatencyMs = Annotated[int, Field(ge=0, le=MAX_LATENCY_MS)]
EventId = Annotated[str, StringConstraints(min_length=1, max_length=255)]


class DbFault(_Fault):
    """The database. All off (the default) is healthy."""

    errors: bool = False  # every unit of work fails, as on a lost connection
    latency_ms: LatencyMs = 0  # added to every unit of work
    lock: bool = False  # another connection holds the SQLite write lock


class StripeFault(_Fault):
    """Stripe's API, as the outgoing checkout and portal calls see it."""

    errors: bool = False  # Stripe answers 500
    latency_ms: LatencyMs = 0  # added before each call
    timeout: bool = False  # Stripe never answers: each call times out


class EmailFault(_Fault):
    """The email provider, as the outbox deliverer sees it."""

    errors: bool = False  # the provider answers 503 to every send


class WebhookFault(_Fault):
    """The webhook endpoint itself."""

    reject: bool = False  # every delivery answered 503 before it is read (endpoint down)
    # Fail once, after its effects are committed, for each of these event ids.
    fail_once: Annotated[list[EventId], Field(max_length=100_000)] = []


class FaultsRequest(_Fault):
    """``POST /__harness__/faults``."""

    clear: bool = False
    db: DbFault | None = None
    stripe: StripeFault | None = None
    email: EmailFault | None = None
    webhook: WebhookFault | None = None


class FaultsView(BaseModel):
    """``GET``/``POST /__harness__/faults``: every target's fault, and the
    active ones by name (``db.errors``, ``stripe.latency_ms``, ...)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    db: DbFault
    stripe: StripeFault
    email: EmailFault
    webhook: WebhookFault
    active: list[str]


def fault_names() -> list[str]:
    """Every fault's name, ``target.field``, in the order of the targets."""
    targets: dict[str, type[BaseModel]] = {
        "db": DbFault,
        "stripe": StripeFault,
        "email": EmailFault,
        "webhook": WebhookFault,
    }
    return [f"{t}.{name}" for t, model in targets.items() for name in model.model_fields]


def active_names(view_parts: dict[str, BaseModel]) -> list[str]:
    """``target.field`` for every field that differs from its default, sorted."""
    names = []
    for target, fault in view_parts.items():
        defaults = type(fault)()
        for name in type(fault).model_fields:
            if getattr(fault, name) != getattr(defaults, name):
                names.append(f"{target}.{name}")
    return sorted(names)
