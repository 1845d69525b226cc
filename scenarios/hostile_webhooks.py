"""A seeded webhook fuzz: forged, malformed, stale, future-dated, oversized
and empty deliveries to ``/webhook``, none of which may change anything.

``webhook_cases`` is pure (a seeded ``random.Random``, the target's ``now``
and secret passed in) and yields the requests; ``fuzz_webhooks`` sends them.
No case carries a valid signature inside the tolerance window: the right
secret appears only over another body, with a timestamp out of tolerance, or
under another scheme, so every one must be refused and none recorded.
"""

from __future__ import annotations

import json
import random
import string
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import httpx

from licensing_service.contract import routes
from licensing_service.contract import stripe as contract

Progress = Callable[[str], None]
EVENT_TYPES = [*sorted(contract.HANDLED_EVENTS), "customer.created", "", "invoice.paid.extra"]
CONTENT_TYPES = (
    "application/json",
    "application/json; charset=utf-8",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/octet-stream",
    "",
    "application/json; charset=latin-1",
)


@dataclass(frozen=True)
class Case:
    kind: str  # which forgery this is, for the report
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "POST"


def webhook_cases(
    rng: random.Random,
    *,
    secret: str,
    now: int,
    emails: Sequence[str],
    max_body: int = 64 * 1024,
    tolerance: int = contract.TOLERANCE_SECONDS,
) -> Iterator[Case]:
    """An endless stream of hostile deliveries (take as many as you send)."""
    while True:
        body = _body(rng, emails, now, max_body)
        kind, signature = _signature(rng, secret, now, body, tolerance)
        headers = {"content-type": rng.choice(CONTENT_TYPES)}
        if signature is not None:
            name = rng.choice((contract.SIGNATURE_HEADER, "stripe-signature", "STRIPE-SIGNATURE"))
            headers[name] = signature
        for _ in range(rng.randrange(3)):
            headers[f"x-{_word(rng, 8)}"] = _word(rng, rng.randrange(0, 64))
        if rng.random() < 0.05:
            headers["content-encoding"] = rng.choice(("gzip", "br", "identity", "x"))
        if not headers["content-type"]:
            del headers["content-type"]
        method = "POST" if rng.random() < 0.95 else rng.choice(("GET", "PUT", "PATCH", "DELETE"))
        yield Case(kind, body, headers, method)


def _signature(
    rng: random.Random, secret: str, now: int, body: bytes, tolerance: int
) -> tuple[str, str | None]:
    wrong = "whsec_" + _word(rng, 24)
    other_body = body + b" "
    stale = now - tolerance - 1 - rng.randrange(0, 10**7)
    future = now + tolerance + 1 + rng.randrange(0, 10**7)
    kinds: list[tuple[str, Callable[[], str | None]]] = [
        ("missing", lambda: None),
        ("empty", lambda: ""),
        ("garbage", lambda: _word(rng, rng.randrange(1, 200), string.printable.strip())),
        ("wrong-secret", lambda: contract.signature_header(body, wrong, now)),
        ("stale", lambda: contract.signature_header(body, secret, stale)),
        ("future", lambda: contract.signature_header(body, secret, future)),
        ("other-body", lambda: contract.signature_header(other_body, secret, now)),
        ("several-v1-wrong", lambda: _several(rng, body, now, wrong)),
        ("v0-only", lambda: f"t={now},v0={contract.compute_signature(body, secret, now)}"),
        ("no-t", lambda: f"v1={contract.compute_signature(body, secret, now)}"),
        ("t-not-a-number", lambda: f"t={_word(rng, 6)},v1={'0' * 64}"),
        ("t-huge", lambda: f"t={'9' * rng.randrange(12, 400)},v1={'a' * 64}"),
        ("t-negative", lambda: f"t=-{rng.randrange(10**9)},v1={'b' * 64}"),
        ("v1-not-hex", lambda: f"t={now},v1={_word(rng, 64)}"),
        ("v1-truncated", lambda: f"t={now},v1={_v1(body, secret, now)[: rng.randrange(64)]}"),
        ("duplicate-t", lambda: f"t={stale},t={now},v1={_v1(body, secret, stale)}"),
        ("separators", lambda: "t = , ; = ,,, v1 = ,t=,v1="),
        ("long", lambda: f"t={now}," + ",".join(f"v1={'c' * 64}" for _ in range(200))),
    ]
    kind, make = rng.choice(kinds)
    return kind, make()


def _several(rng: random.Random, body: bytes, now: int, wrong: str) -> str:
    signatures = [_v1(body, wrong + str(i), now) for i in range(rng.randrange(2, 8))]
    return f"t={now}," + ",".join(f"v1={s}" for s in signatures)


def _v1(body: bytes, secret: str, timestamp: int) -> str:
    return contract.compute_signature(body, secret, timestamp)


def _body(rng: random.Random, emails: Sequence[str], now: int, max_body: int) -> bytes:
    roll = rng.random()
    if roll < 0.06:
        return b""
    if roll < 0.12:
        return rng.randbytes(max_body + rng.randrange(1, 4 * max_body))  # over the limit
    if roll < 0.22:
        return rng.randbytes(rng.randrange(1, 2048))
    if roll < 0.30:
        return _word(rng, rng.randrange(1, 500), string.printable).encode()
    if roll < 0.36:
        return json.dumps([rng.random() for _ in range(rng.randrange(50))]).encode()
    return json.dumps(_event(rng, emails, now)).encode()


def _event(rng: random.Random, emails: Sequence[str], now: int) -> dict[str, object]:
    """A plausible event aimed at a real customer: what a forger would send."""
    email = rng.choice(emails) if emails else f"{_word(rng, 8)}@example.test"
    status = rng.choice(("active", "canceled", "past_due", "unpaid", "paused"))
    obj: dict[str, object] = {
        "id": rng.choice(("sub_", "in_", "cs_", "cus_")) + _word(rng, 14),
        "object": rng.choice(("subscription", "invoice", "checkout.session", "customer")),
        "customer": "cus_" + _word(rng, 14),
        "customer_email": email,
        "customer_details": {"email": email},
        "status": status,
        "subscription": "sub_" + _word(rng, 14),
        "current_period_end": now + rng.randrange(-(10**6), 10**7),
    }
    event: dict[str, object] = {
        "id": "evt_" + _word(rng, 20),
        "object": "event",
        "type": rng.choice(EVENT_TYPES),
        "created": now - rng.randrange(0, 10**6),
        "data": {"object": obj},
        "livemode": rng.random() < 0.5,
    }
    if rng.random() < 0.2:  # a field removed or of the wrong type
        key = rng.choice(list(event))
        event[key] = rng.choice((None, 42, [], {}, "x" * rng.randrange(100)))
    return event


def _word(rng: random.Random, n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(rng.choices(alphabet, k=n))


# ------------------------------------------------------------------ sending


@dataclass
class FuzzResult:
    sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    transport_errors: Counter[str] = field(default_factory=Counter)

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)

    @property
    def accepted(self) -> int:
        return sum(n for status, n in self.statuses.items() if 200 <= status < 300)


def target_now(url: str, client: httpx.Client) -> int:
    """The target's clock (its test clock when it has one), in Unix seconds."""
    answer = client.get(url + routes.HARNESS_CLOCK)
    if answer.status_code == 200:
        return int(datetime.fromisoformat(answer.json()["now"]).timestamp())
    return int(time.time())  # a target without a test clock runs on real time


def fuzz_webhooks(
    url: str,
    secret: str,
    *,
    requests: int,
    seed: int = 1,
    emails: Sequence[str] = (),
    max_body: int = 64 * 1024,
    deadline_s: float = 600,
    progress: Progress | None = None,
) -> FuzzResult:
    """Send ``requests`` hostile deliveries to ``url``'s ``/webhook``, one at a
    time on one keep-alive connection (reopened when the server closes it),
    stopping at ``deadline_s`` whatever remains. Counts every answer."""
    rng = random.Random(seed)
    result = FuzzResult()
    stop_at = time.monotonic() + deadline_s
    next_note = time.monotonic() + 3
    with httpx.Client(timeout=10) as client:
        now = target_now(url, client)
        cases = webhook_cases(rng, secret=secret, now=now, emails=emails, max_body=max_body)
        for case in cases:
            if result.sent >= requests or time.monotonic() > stop_at:
                break
            result.sent += 1
            result.kinds[case.kind] += 1
            try:
                answer = client.request(
                    case.method, url + routes.WEBHOOK, content=case.body, headers=case.headers
                )
            except httpx.HTTPError as exc:
                # The server closes as it refuses (413) a body we are still sending.
                size = "oversized" if len(case.body) > max_body else "in-limit"
                result.transport_errors[f"{type(exc).__name__} ({size} body)"] += 1
                continue
            result.statuses[answer.status_code] += 1
            if progress is not None and time.monotonic() >= next_note:
                next_note = time.monotonic() + 3
                progress(f"webhook fuzz: {result.sent}/{requests} sent, {dict(result.statuses)}")
    return result
