"""Licenses on a licensing service, made the only way its public API allows.

A signed ``checkout.session.completed`` webhook (subscription mode) creates
the license; an ``instant`` validation (the email and the Stripe checkout
session id as credentials) then hands out its unlock token. Nothing here
touches the service's database, so the same code provisions the reference
service and any other deployment of the contract.

Deterministic for a given ``(prefix, seed)``: emails, Stripe ids and
fingerprints are derived from both, so provisioning the same pair again
meets the same licenses (the checkout is then a duplicate event, answered
``idempotent``, and the instant validation hands out the same token).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from os import PathLike
from pathlib import Path
from typing import Any, TypeVar

import httpx

from fixtures.stripe import objects
from fixtures.stripe.ids import IdFactory
from fixtures.target import target_clock
from licensing_service.contract import ErrorCode, routes
from licensing_service.contract import stripe as contract

# A reserved top-level domain (RFC 2606): a service that really sends email
# (RESEND_API_KEY set) can never reach anyone with these addresses.
EMAIL_DOMAIN = "licensing-harness.test"
# Threads (and connections). More is slower against a local service: the
# client's threads then fight over the GIL (measured on 2 cores, 1,000
# licenses against `serve`: 2.7 s with 8 threads, 3.9 s with 32).
MAX_WORKERS = 8
TIMEOUT_SECONDS = 10.0

T = TypeVar("T")
R = TypeVar("R")


class ProvisionError(RuntimeError):
    """The target would not create a license or hand out its token; the message says why."""


@dataclass(frozen=True, slots=True)
class Credential:
    """One license as a device and Stripe know it (a line of the credentials file)."""

    email: str
    token: str
    stripe_session_id: str
    fingerprint: str
    stripe_customer_id: str
    subscription_id: str


@dataclass(frozen=True, slots=True)
class PlannedLicense:
    """A license before the target has made it: everything but the token."""

    email: str
    name: str
    fingerprint: str
    stripe_session_id: str
    stripe_customer_id: str
    subscription_id: str
    checkout_event_id: str

    def with_token(self, token: str) -> Credential:
        return Credential(
            email=self.email,
            token=token,
            stripe_session_id=self.stripe_session_id,
            fingerprint=self.fingerprint,
            stripe_customer_id=self.stripe_customer_id,
            subscription_id=self.subscription_id,
        )


def plan_licenses(count: int, *, seed: int, prefix: str = "load") -> list[PlannedLicense]:
    if count < 0:
        raise ValueError(f"count must not be negative, got {count}")
    tag = _slug(prefix)
    # Seeded by prefix and seed together: two runs that share only a seed
    # must not share Stripe customer ids (the service keys billing state by them).
    ids = IdFactory(random.Random(f"{tag}:{seed}"))
    planned = []
    for n in range(count):
        planned.append(
            PlannedLicense(
                email=f"{tag}-{seed}-{n:06d}@{EMAIL_DOMAIN}",
                name=f"Load Till {n}",
                fingerprint=ids.new("fp"),
                stripe_session_id=ids.new("cs"),
                stripe_customer_id=ids.new("cus"),
                subscription_id=ids.new("sub"),
                checkout_event_id=ids.new("evt"),
            )
        )
    return planned


def _slug(prefix: str) -> str:
    slug = re.sub(r"[^a-z0-9.-]+", "-", prefix.lower()).strip("-.")
    if not slug:
        raise ValueError(f"prefix {prefix!r} has nothing usable in an email address")
    return slug


def checkout_event(lic: PlannedLicense, created: int) -> dict[str, Any]:
    """The completed subscription checkout that creates ``lic``."""
    session = objects.checkout_session(
        id=lic.stripe_session_id,
        customer=lic.stripe_customer_id,
        subscription=lic.subscription_id,
        email=lic.email,
        name=lic.name,
        created=created - 60,  # the customer spent a minute on Checkout's page
    )
    return objects.event(
        id=lic.checkout_event_id,
        type=contract.CHECKOUT_COMPLETED,
        created=created,
        data_object=session,
    )


def instant_body(lic: PlannedLicense | Credential) -> dict[str, Any]:
    return {
        "operation": "instant",
        "credentials": {"email": lic.email, "stripeSessionId": lic.stripe_session_id},
        "device": {"machineFingerprint": lic.fingerprint},
    }


class Provisioner:
    """The two steps for one license, over a shared (thread-safe) client whose
    ``base_url`` is the target. ``clock`` is the target's unix time: a
    service on a moved test clock refuses signatures made on ours."""

    def __init__(
        self, client: httpx.Client, secrets: Sequence[str], clock: Callable[[], float]
    ) -> None:
        if not secrets:
            raise ProvisionError(
                "no webhook secret: licenses are created by signed checkout webhooks "
                "(give the target's STRIPE_WEBHOOK_SECRET)"
            )
        self.client = client
        self.secrets = list(secrets)
        self.clock = clock

    def create(self, lic: PlannedLicense) -> Credential:
        self.checkout(lic)
        return lic.with_token(self.instant(lic))

    def checkout(self, lic: PlannedLicense) -> None:
        response = self.send_event(checkout_event(lic, int(self.clock())))
        if response.status_code != 200:
            raise ProvisionError(_webhook_refusal(response, lic.email))

    def send_event(self, event: dict[str, Any]) -> httpx.Response:
        """Post one event, signed now (with one ``v1`` per secret, as Stripe does)."""
        body = json.dumps(event, separators=(",", ":")).encode()
        header = contract.signature_header(body, self.secrets, int(self.clock()))
        headers = {"content-type": "application/json", contract.SIGNATURE_HEADER: header}
        return _post(self.client, routes.WEBHOOK, content=body, headers=headers)

    def instant(self, lic: PlannedLicense) -> str:
        response = _post(self.client, routes.VALIDATE_UNIFIED, json=instant_body(lic))
        token = _unlock_token(response)
        if response.status_code != 200 or token is None:
            code, message = error_of(response)
            raise ProvisionError(
                f"instant validation of {lic.email} answered HTTP {response.status_code}"
                f" {code or ''} ({message or 'no message'}), expected 200 with"
                " subscription.unlockToken"
            )
        return token


def provision(
    base_url: str, secrets: Sequence[str], count: int, *, seed: int, prefix: str = "load"
) -> list[Credential]:
    """Create ``count`` licenses on the target, concurrently; raise
    :class:`ProvisionError` (with the reason) if it refuses any."""
    planned = plan_licenses(count, seed=seed, prefix=prefix)
    if not secrets:
        raise ProvisionError(
            "no webhook secret: licenses are created by signed checkout webhooks "
            "(give the target's STRIPE_WEBHOOK_SECRET)"
        )
    if not planned:
        return []
    base = base_url.rstrip("/")
    workers = max(1, min(MAX_WORKERS, len(planned)))
    limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
    with httpx.Client(base_url=base, timeout=TIMEOUT_SECONDS, limits=limits) as client:
        provisioner = Provisioner(client, secrets, target_clock(base + routes.WEBHOOK))
        # One alone first: a wrong secret is then one clear error, not `count` of them.
        first = provisioner.create(planned[0])
        rest = in_parallel(provisioner.create, planned[1:], workers)
    return [first, *rest]


def in_parallel(fn: Callable[[T], R], items: Sequence[T], workers: int) -> list[R]:
    """``fn`` over ``items`` on a thread pool, results in order; the first
    exception cancels what has not started and is raised."""
    if not items:
        return []
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="provision")
    try:
        futures = [pool.submit(fn, item) for item in items]
        return [future.result() for future in futures]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# ----------------------------------------------------------------- files


def write_credentials(path: str | PathLike[str], creds: Sequence[Credential]) -> None:
    """JSON lines, one license each (what the Locust workloads read)."""
    lines = [json.dumps(asdict(c), separators=(",", ":")) for c in creds]
    Path(path).write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def read_credentials(path: str | PathLike[str]) -> list[Credential]:
    wanted = {f.name for f in fields(Credential)}
    creds = []
    text = Path(path).read_text(encoding="utf-8")
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise ValueError(f"{path}:{number}: not JSON ({exc})") from None
        if not isinstance(row, dict) or not wanted <= row.keys():
            raise ValueError(f"{path}:{number}: expected an object with {sorted(wanted)}")
        creds.append(Credential(**{name: str(row[name]) for name in wanted}))
    return creds


# --------------------------------------------------------------- answers


def error_of(response: httpx.Response) -> tuple[str | None, str | None]:
    """The contract's ``error.code`` and ``error.message`` of an answer, if it has them."""
    body = json_of(response)
    error = body.get("error")
    if not isinstance(error, dict):
        return None, None
    code = error.get("code")
    message = error.get("message")
    if isinstance(message, list):
        message = "; ".join(str(m) for m in message)
    return (
        code if isinstance(code, str) else None,
        message if isinstance(message, str) else None,
    )


def json_of(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _unlock_token(response: httpx.Response) -> str | None:
    subscription = json_of(response).get("subscription")
    token = subscription.get("unlockToken") if isinstance(subscription, dict) else None
    return token if isinstance(token, str) and token else None


def _webhook_refusal(response: httpx.Response, email: str) -> str:
    code, message = error_of(response)
    said = f"HTTP {response.status_code} {code or ''}: {message or 'no message'}"
    if code == ErrorCode.WEBHOOK_SIGNATURE_INVALID:
        return f"the target refused the signature: is STRIPE_WEBHOOK_SECRET the target's? ({said})"
    if code == ErrorCode.WEBHOOK_NOT_CONFIGURED:
        return f"the target has no webhook secret configured, so it takes no checkouts ({said})"
    if response.status_code in (404, 405):
        return f"the target has no POST {routes.WEBHOOK} route: is it a licensing service? ({said})"
    return f"the target refused the checkout webhook for {email} ({said})"


def _post(client: httpx.Client, path: str, **kwargs: Any) -> httpx.Response:
    try:
        return client.post(path, **kwargs)
    except httpx.HTTPError as exc:
        raise ProvisionError(
            f"cannot reach {client.base_url}{path}: {type(exc).__name__}: {exc}"
        ) from exc
