"""The recording load: every answer kept with what it must be judged by; bounded in time."""

from __future__ import annotations

import time
from datetime import datetime

import httpx
import pytest

from licensing_service.contract import routes
from loadtests.rehearsal_load import LoadLicense, LoadPlan, RehearsalLoad, split_pools
from scenarios.target import licenses, probe
from tests.live import refusing_port
from tests.scenarios.conftest import Reference


def plan(lics: list[LoadLicense], secrets: list[str], **more: object) -> LoadPlan:
    values: dict[str, object] = {
        "users": 3,
        "think_s": 0.01,
        "timeout_s": 2.0,
        "mix": {"validate": 3, "suspended": 1, "session": 1, "webhook": 1, "signup": 1},
        "licenses": lics,
        "max_seconds": 30.0,
        "webhook_secrets": secrets,
    }
    values.update(more)
    return LoadPlan(**values)  # type: ignore[arg-type]


def test_every_answer_is_recorded_and_right(reference: Reference) -> None:
    target = probe(reference.url, tuple(reference.secrets), managed=True)
    lics = licenses(target, 6, 2, seed=5)
    load = RehearsalLoad(reference.url, plan(lics, reference.secrets), time.monotonic)
    load.start()
    time.sleep(1.0)
    load.stop()
    answers = load.answers()
    by_op = {a.op for a in answers}
    assert by_op == {"validate", "suspended", "session", "webhook", "signup"}
    for a in answers:
        if a.op == "validate":
            assert (a.status, a.valid, a.degraded, a.expected) == (200, True, False, "active")
            assert a.tier_s in (900, 1800, 3600) and a.server_time
        elif a.op == "suspended":
            assert (a.status, a.code, a.expected) == (403, "SUBSCRIPTION_INACTIVE", "suspended")
        elif a.op in ("webhook", "signup"):
            assert a.status == 200
        else:
            assert a.status == 200 and a.action in ("start", "heartbeat", "takeover")
    n = len(answers)
    time.sleep(0.3)
    assert len(load.answers()) == n  # stopped means stopped


def _jump_clock(load: RehearsalLoad, url: str, *, held: bool) -> None:
    """Move the target's clock 2 h; a busy machine's 0.2 s between the move and
    the new signing offset, as the runner does it."""

    def move() -> None:
        view = httpx.post(f"{url}{routes.HARNESS_CLOCK}", json={"advance_seconds": 7200}).json()
        time.sleep(0.2)
        now = datetime.fromisoformat(str(view["now"]).replace("Z", "+00:00"))
        load.set_sign_offset(now.timestamp() - time.time())

    if held:
        with load.webhooks_held():
            move()
    else:
        move()


@pytest.mark.parametrize("held", [True, False], ids=["held", "not-held"])
def test_no_webhook_signed_on_the_old_clock_lands_on_the_new(
    reference: Reference, held: bool
) -> None:
    target = probe(reference.url, tuple(reference.secrets), managed=True)
    lics = licenses(target, 3, 0, seed=7)
    mix = {"webhook": 1}
    load = RehearsalLoad(reference.url, plan(lics, reference.secrets, mix=mix), time.monotonic)
    load.start()
    time.sleep(0.3)
    _jump_clock(load, reference.url, held=held)
    time.sleep(0.3)
    load.stop()
    statuses = [a.status for a in load.answers()]
    refused = statuses.count(400)
    assert statuses.count(200) > 10
    if held:
        assert refused == 0
    else:
        # Without the hold, webhooks signed before the move are refused after it
        # (their timestamps are 2 h old): the race the hold exists for.
        assert refused > 0


def test_the_load_stops_by_itself(reference: Reference) -> None:
    target = probe(reference.url, tuple(reference.secrets), managed=True)
    lics = licenses(target, 2, 0, seed=6)
    load = RehearsalLoad(reference.url, plan(lics, [], max_seconds=0.5), time.monotonic)
    load.start()
    time.sleep(1.5)
    assert not load.running


def test_a_refused_connection_is_recorded_not_raised() -> None:
    lic = LoadLicense("a@x.test", "t", "fp", "active")
    with refusing_port() as port:
        url = f"http://127.0.0.1:{port}"
        load = RehearsalLoad(url, plan([lic], [], users=1, max_seconds=0.3), time.monotonic)
        load.start()
        # Until the first answer (its thread may start late on a busy machine: a
        # fixed 0.6 s found none), bounded.
        waited = time.monotonic() + 10
        while not load.answers() and time.monotonic() < waited:
            time.sleep(0.01)
        load.stop()
    answers = load.answers()
    assert answers and all(a.status is None and a.failure == "connect" for a in answers)


def test_only_loopback() -> None:
    with pytest.raises(ValueError, match="loopback"):
        RehearsalLoad("http://10.1.2.3:80", plan([], []), time.monotonic)


def test_each_user_holds_its_own_session_license() -> None:
    lics = [LoadLicense(f"{n}@x.test", "t", "fp", "active") for n in range(5)]
    lics.append(LoadLicense("s@x.test", "t", "fp", "suspended"))
    pools = split_pools(lics, users=3)
    assert len(pools.sessions) == 3 and not set(pools.sessions) & set(pools.active)
    assert [lic.email for lic in pools.suspended] == ["s@x.test"]
