"""The service's promises across replicas: three processes on one database,
driven on each one's own address (so the test says which replica gets what)."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from fixtures.target import target_clock
from licensing_service.contract import routes
from loadtests.harness.checks.invoices import invoice_event, new_ids
from loadtests.harness.provision import Credential, Provisioner, provision
from scenarios.replicas import ReplicaSet
from scenarios.storm import StormConfig, run_storm

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

LICENSES = 100
STARTS = 1_000
# A license change committed by one replica reaches another's caches and breaker
# snapshot at its next unit of work; an idle replica opens one every audit flush
# (50 ms, the failed-attempt feed). The tests allow four times that.
BOUND_SECONDS = 0.2


def _validate(client: httpx.Client, base: str, cred: Credential) -> httpx.Response:
    body = {
        "operation": "validate",
        "credentials": {"email": cred.email, "token": cred.token},
        "device": {"machineFingerprint": cred.fingerprint},
    }
    return client.post(base + routes.VALIDATE_UNIFIED, json=body)


def _valid(response: httpx.Response) -> bool:
    return response.status_code == 200 and response.json()["validation"]["valid"] is True


def _suspend(replicas: ReplicaSet, base: str, cred: Credential) -> None:
    with httpx.Client(base_url=base, timeout=10) as client:
        clock = target_clock(base + routes.WEBHOOK, client)
        event = invoice_event(
            cred,
            paid=False,
            invoice_id=new_ids().new("in"),
            created=int(clock()) + 1,
            ids=new_ids(),
        )
        answer = Provisioner(client, replicas.secrets, clock).send_event(event)
        assert answer.status_code == 200, answer.text


def _db_fault(client: httpx.Client, base: str, on: bool) -> None:
    answer = client.post(base + routes.HARNESS_FAULTS, json={"db": {"errors": on}})
    assert answer.status_code == 200, answer.text


def test_the_address_spreads_connections_over_every_replica(replicas: ReplicaSet) -> None:
    assert replicas.proxy is not None
    before = replicas.proxy.spread()
    for _ in range(6):
        assert httpx.get(replicas.url + routes.HEALTH_READY, timeout=5).status_code == 200
    after = replicas.proxy.spread()
    assert [a - b for a, b in zip(after, before, strict=True)] == [2, 2, 2]


def test_concurrent_session_starts_leave_one_session_per_license(replicas: ReplicaSet) -> None:
    creds = provision(replicas.urls[0], replicas.secrets, LICENSES, seed=11, prefix="starts")
    per_license = STARTS // LICENSES
    answers: dict[str, Counter[int]] = {c.email: Counter() for c in creds}

    async def start(client: httpx.AsyncClient, n: int) -> None:
        cred = creds[n % LICENSES]
        body = {
            "operation": "session",
            "action": "start",
            "credentials": {"email": cred.email, "token": cred.token, "sessionId": f"s-{n}"},
            "device": {"machineFingerprint": f"fp-{n}", "deviceInfo": {"hostname": f"till-{n}"}},
        }
        base = replicas.urls[n % len(replicas.urls)]  # one license's starts on all three
        response = await client.post(base + routes.VALIDATE_UNIFIED, json=body)
        answers[cred.email][response.status_code] += 1

    async def storm() -> None:
        # 30 in flight at once, 10 per replica; waiting for a connection is not a timeout.
        limits = httpx.Limits(max_connections=30)
        timeout = httpx.Timeout(30, pool=None)
        async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
            await asyncio.gather(*(start(client, n) for n in range(STARTS)))

    started = time.monotonic()
    asyncio.run(storm())
    print(
        f"{STARTS} starts over {len(replicas.urls)} replicas in {time.monotonic() - started:.1f} s"
    )
    for email, seen in answers.items():
        # Exactly one start won; every other was told of the conflict.
        assert seen == Counter({200: 1, 409: per_license - 1}), (email, seen)


def test_a_suspension_on_one_replica_is_seen_by_another_within_the_bound(
    replicas: ReplicaSet,
) -> None:
    a, b = replicas.urls[0], replicas.urls[1]
    cred = provision(a, replicas.secrets, 1, seed=12, prefix="suspend")[0]
    with httpx.Client(timeout=10) as client:
        assert _valid(_validate(client, b, cred))  # in B's cache and breaker snapshot
        _suspend(replicas, a, cred)
        deadline = time.monotonic() + BOUND_SECONDS
        seen_valid = _valid(_validate(client, b, cred))
        while seen_valid and time.monotonic() < deadline:
            seen_valid = _valid(_validate(client, b, cred))
        assert not seen_valid


def test_an_idle_replica_drops_a_suspended_license_from_its_snapshot(
    replicas: ReplicaSet,
) -> None:
    """B validated the license, then sat idle while A suspended it; B's database
    then fails. B's breaker answers from its snapshot, which must not hold the
    license as active any more."""
    a, b = replicas.urls[0], replicas.urls[2]
    cred, control = provision(a, replicas.secrets, 2, seed=13, prefix="snapshot")
    with httpx.Client(timeout=10) as client:
        assert _valid(_validate(client, b, cred)) and _valid(_validate(client, b, control))
        _suspend(replicas, a, cred)
        time.sleep(BOUND_SECONDS)  # B idle: nothing but its own flusher runs
        _db_fault(client, b, True)
        try:
            degraded = _validate(client, b, control)
            suspended = _validate(client, b, cred)
        finally:
            _db_fault(client, b, False)
    # The control proves B really answered from its snapshot.
    assert _valid(degraded) and degraded.json()["degraded"] is True
    assert not _valid(suspended), suspended.text


def test_a_storm_spread_over_three_replicas_is_applied_once_each(replicas: ReplicaSet) -> None:
    config = StormConfig(
        events=300, seed=5, duplicate_rate=0.2, outage_seconds=0.0, storm_seconds=120.0
    )
    db = replicas.db if isinstance(replicas.db, Path) else None
    result = run_storm(
        replicas.urls[0], replicas.secrets, config, db=db, replicas=replicas.urls[1:]
    )
    summary = result.summary()
    assert result.passed, json.dumps(summary, indent=2, default=str)
    _outbox_drained_once(replicas)


def _outbox_drained_once(replicas: ReplicaSet) -> None:
    """Every email queued so far is sent once, by whichever replica claimed it:
    the three deliverers poll the one outbox every 50 ms."""
    sink = _sink(replicas)
    deadline = time.monotonic() + 10
    with httpx.Client(timeout=10) as client:
        while time.monotonic() < deadline:
            listing = client.get(replicas.urls[0] + routes.HARNESS_EMAILS).json()["emails"]
            if listing and all(row["delivery_status"] == "delivered" for row in listing):
                break
            time.sleep(0.1)  # the deliverers' pace, not the behaviour under test
    assert listing and all(row["delivery_status"] == "delivered" for row in listing), Counter(
        row["delivery_status"] for row in listing
    )
    sent = Counter(json.loads(line)["id"] for line in sink.read_text().splitlines())
    assert sent and max(sent.values()) == 1, sent.most_common(3)
    assert len(sent) >= len(listing)


def _sink(replicas: ReplicaSet) -> Path:
    return replicas.work / "emails.jsonl"  # LH_EMAIL_SINK (conftest)


def test_the_replicas_share_one_test_clock(replicas: ReplicaSet) -> None:
    """A replica starting resets the shared clock file in place: unlinked, each
    replica started after another would have mapped a clock of its own."""
    with httpx.Client(timeout=10) as client:
        moved = client.post(
            replicas.urls[0] + routes.HARNESS_CLOCK, json={"advance_seconds": 3600}
        ).json()["offset_seconds"]
        for base in replicas.urls[1:]:
            seen = client.get(base + routes.HARNESS_CLOCK).json()["offset_seconds"]
            assert abs(seen - moved) < 1, (base, seen, moved)
