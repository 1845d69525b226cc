"""The gate's live checks (``loadtests.harness.checks``) and license provisioning.

Each check passes against the reference service and fails (not errors)
against a variant of it that breaks the one invariant the check guards.
Variants are made by patching the service's internals in this process:
``LiveServer`` serves from a thread of the test process, so the patches
reach it. ``settle_seconds=0``: one server process has no stamp lag to wait out.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest

from licensing_service.domain import cache_tiers, sessions
from licensing_service.domain.sessions import Proceed, SessionRecord
from licensing_service.domain.webhook_claims import Claim, decide_claim
from licensing_service.service import licensing, webhooks
from licensing_service.service.customer_view import CustomerView
from loadtests.harness.checks.runner import CHECKS, run_checks
from loadtests.harness.checks.target import CLOCK_REASON, SIGNING_REASON, Target
from loadtests.harness.model import CheckResult, Outcome
from loadtests.harness.provision import (
    ProvisionError,
    provision,
    read_credentials,
    write_credentials,
)
from tests.conftest import TEST_WEBHOOK_SECRET
from tests.live import LiveServer, refusing_port

MakeServer = Callable[..., LiveServer]
ALL = dict.fromkeys(CHECKS, True)


def run_one(
    server: LiveServer, name: str, secrets: list[str] | None = None, propagation: float = 0.0
) -> CheckResult:
    secrets = [TEST_WEBHOOK_SECRET] if secrets is None else secrets
    [result] = run_checks(
        server.url, secrets, {name: True}, settle_seconds=0, propagation_seconds=propagation
    )
    return result


def outcomes(results: list[CheckResult]) -> dict[str, tuple[Outcome, str]]:
    return {r.name: (r.outcome, r.detail) for r in results}


# ------------------------------------------------------------- the service


@pytest.mark.slow
def test_every_check_passes_against_the_reference_service_twice(make_server: MakeServer):
    server = make_server()
    notes: list[str] = []
    for _ in range(2):  # again on the same service: each run makes its own licenses
        results = run_checks(
            server.url, [TEST_WEBHOOK_SECRET], ALL, progress=notes.append, settle_seconds=0
        )
        assert [r.name for r in results] == list(CHECKS)
        assert all(r.outcome is Outcome.PASS for r in results), outcomes(results)
        assert all(r.detail and "\n" not in r.detail for r in results)
    assert any(n.startswith("check webhook_idempotency: pass") for n in notes)
    details = outcomes(results)
    assert "first validation → 900" in details["cache_tiers"][1]
    assert "each queued exactly once" in details["webhook_idempotency"][1]


# ---------------------------------------------------- broken variants fail


def keep_sessions_alive_past_120_s(monkeypatch: pytest.MonkeyPatch) -> None:
    # plan_heartbeat asks is_alive(), whose ttl default was bound to SESSION_TTL
    # when the function was defined: patching SESSION_TTL itself changes nothing.
    monkeypatch.setattr(sessions.is_alive, "__defaults__", (timedelta(seconds=125),))


def process_duplicates_again(monkeypatch: pytest.MonkeyPatch) -> None:
    def reprocess(
        status: str | None,
        lease_until: datetime | None,
        received_at: datetime | None,
        now: datetime,
        lease: timedelta,
    ) -> Claim:
        if status == "completed":
            return Claim.RETRY  # as if the claim were never looked at
        return decide_claim(status, lease_until, received_at, now, lease)

    monkeypatch.setattr(webhooks, "decide_claim", reprocess)


def serve_stale_cached_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(CustomerView, "_discard_id", lambda self, customer_id: None)


def show_changes_after(lag_s: float) -> Callable[[pytest.MonkeyPatch], None]:
    """A replica told of a write ``lag_s`` late: after a unit of work commits,
    this process's customer view keeps serving the old rows it wrote for
    ``lag_s`` from the first read on (as a replica does until it reads the
    change feed), then forgets them."""

    def patch(monkeypatch: pytest.MonkeyPatch) -> None:
        written: list[tuple[CustomerView, int]] = []
        told: list[tuple[CustomerView, int]] = []  # committed; the lag starts at a read
        due: list[tuple[float, CustomerView, int]] = []
        discard, row, committed = CustomerView._discard_id, CustomerView.row, CustomerView.committed

        def later(self: CustomerView, customer_id: int) -> None:
            # A newer write of the customer supersedes what an older one would discard.
            told[:] = [t for t in told if t[1] != customer_id]
            due[:] = [d for d in due if d[2] != customer_id]
            written.append((self, customer_id))

        def lag_from_commit(self: CustomerView) -> None:
            committed(self)
            told.extend(written)
            written.clear()

        def lagging_row(self: CustomerView, email: str) -> object:
            now = time.monotonic()
            due.extend((now + lag_s, view, customer_id) for view, customer_id in told)
            told.clear()
            for item in [d for d in due if d[0] <= now]:
                due.remove(item)
                discard(item[1], item[2])
            return row(self, email)

        monkeypatch.setattr(CustomerView, "_discard_id", later)
        monkeypatch.setattr(CustomerView, "committed", lag_from_commit)
        monkeypatch.setattr(CustomerView, "row", lagging_row)

    return patch


def never_conflict(monkeypatch: pytest.MonkeyPatch) -> None:
    def proceed(open_sessions: list[SessionRecord], session_id: str, now: datetime) -> Proceed:
        return Proceed(tuple(r.session_id for r in open_sessions if r.session_id != session_id))

    monkeypatch.setattr(licensing, "plan_start", proceed)


def recent_until(seconds: int) -> Callable[[pytest.MonkeyPatch], None]:
    def patch(monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(cache_tiers, "RECENT", timedelta(seconds=seconds))

    return patch


def today_until(seconds: int) -> Callable[[pytest.MonkeyPatch], None]:
    def patch(monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(cache_tiers, "TODAY", timedelta(seconds=seconds))

    return patch


@pytest.mark.slow
@pytest.mark.parametrize(
    ("check", "breakage", "expected"),
    [
        pytest.param(
            "heartbeat_expiry",
            keep_sessions_alive_past_120_s,
            "heartbeat 120 s after the last one answered 200, expected 404 SESSION_EXPIRED",
            id="session-alive-past-120s",
        ),
        pytest.param(
            "webhook_idempotency",
            process_duplicates_again,
            "processed more than once",
            id="duplicate-webhook-applied-twice",
        ),
        pytest.param(
            "no_grace",
            serve_stale_cached_rows,
            "invoice.payment_failed answered 200",
            id="suspended-license-served-from-stale-cache",
        ),
        pytest.param(
            "cache_tiers",
            recent_until(3595),
            "a validation 3599 s after the previous one got caching.duration 1800 (moderate)",
            id="aggressive-tier-ends-5s-early",
        ),
        pytest.param(
            "cache_tiers",
            recent_until(3601),
            "a validation 3600 s after the previous one got caching.duration 3600 (aggressive)",
            id="aggressive-tier-ends-1s-late",
        ),
        pytest.param(
            "cache_tiers",
            today_until(86405),
            "a validation 86400 s after the previous one got caching.duration 1800 (moderate)",
            id="moderate-tier-ends-5s-late",
        ),
        pytest.param(
            "conflict_takeover",
            never_conflict,
            "device B's start while A's session is alive answered 200,"
            " expected 409 SESSION_CONFLICT",
            id="conflicts-never-raised",
        ),
    ],
)
def test_a_check_fails_against_a_service_that_breaks_its_invariant(
    make_server: MakeServer,
    monkeypatch: pytest.MonkeyPatch,
    check: str,
    breakage: Callable[[pytest.MonkeyPatch], None],
    expected: str,
):
    server = make_server()
    breakage(monkeypatch)
    result = run_one(server, check)
    assert result.outcome is Outcome.FAIL, result
    assert expected in result.detail, result.detail
    assert "expected" in result.detail


def test_the_failure_detail_names_the_expected_and_the_seen_answer(
    make_server: MakeServer, monkeypatch: pytest.MonkeyPatch
):
    server = make_server()
    serve_stale_cached_rows(monkeypatch)
    result = run_one(server, "no_grace")
    assert result.outcome is Outcome.FAIL
    assert "answered 200" in result.detail
    assert "expected 403 SUBSCRIPTION_INACTIVE" in result.detail
    assert "3600 s aggressive tier" in result.detail  # what the device held when suspended


# ------------------------------------------- a deployment's propagation bound


@pytest.mark.parametrize("check", ["cache_tiers", "no_grace"])
def test_bound_0_fails_a_change_shown_late(
    make_server: MakeServer, monkeypatch: pytest.MonkeyPatch, check: str
):
    server = make_server()
    show_changes_after(0.300)(monkeypatch)
    result = run_one(server, check)
    assert result.outcome is Outcome.FAIL, result
    assert "invoice.payment_failed answered 200" in result.detail
    assert "expected 403 SUBSCRIPTION_INACTIVE" in result.detail
    assert "bound" not in result.detail  # judged exactly, as before the bound existed


@pytest.mark.parametrize("check", ["cache_tiers", "no_grace"])
def test_a_change_shown_within_the_bound_passes_and_says_when(
    make_server: MakeServer, monkeypatch: pytest.MonkeyPatch, check: str
):
    server = make_server()
    show_changes_after(0.030)(monkeypatch)
    result = run_one(server, check, propagation=0.500)
    assert result.outcome is Outcome.PASS, result
    shown = [int(n) for n in re.findall(r"seen after (\d+) ms, bound 500 ms", result.detail)]
    assert shown and all(20 <= n <= 500 for n in shown), result.detail
    if check == "no_grace":  # the suspension and the restoration, each timed
        assert len(shown) == 2, result.detail


@pytest.mark.parametrize("check", ["cache_tiers", "no_grace"])
@pytest.mark.parametrize(
    "breakage",
    [serve_stale_cached_rows, show_changes_after(0.400)],
    ids=["never-shown", "shown-after-the-bound"],
)
def test_a_change_not_shown_within_the_bound_fails_naming_it(
    make_server: MakeServer,
    monkeypatch: pytest.MonkeyPatch,
    check: str,
    breakage: Callable[[pytest.MonkeyPatch], None],
):
    server = make_server()
    breakage(monkeypatch)
    started = time.monotonic()
    result = run_one(server, check, propagation=0.050)
    assert result.outcome is Outcome.FAIL, result
    assert "invoice.payment_failed answered 200" in result.detail
    assert "expected 403 SUBSCRIPTION_INACTIVE" in result.detail
    assert "propagation bound 50 ms" in result.detail
    assert re.search(r"still so (\d+) ms after the change was acknowledged", result.detail)
    assert time.monotonic() - started < result.seconds + 1  # no wait beyond the check's own


@pytest.mark.slow
def test_the_email_part_is_left_out_with_a_reason_when_the_outbox_is_not_listed(
    make_server: MakeServer, monkeypatch: pytest.MonkeyPatch
):
    server = make_server()
    # As without --test-clock: no outbox listing.
    monkeypatch.setattr(Target, "outbox", lambda self, recipients: None)
    result = run_one(server, "webhook_idempotency")
    assert result.outcome is Outcome.PASS, result
    assert "emails not checked: the target has no /__harness__/emails" in result.detail


@pytest.mark.slow
def test_emails_past_the_end_of_a_full_outbox_listing_are_not_counted_missing(
    make_server: MakeServer, monkeypatch: pytest.MonkeyPatch
):
    server = make_server()
    older = [
        {"recipient": f"someone-{n}@example.test", "email_type": "welcome"} for n in range(10_000)
    ]
    monkeypatch.setattr(Target, "outbox", lambda self, recipients: older)
    result = run_one(server, "webhook_idempotency")
    assert result.outcome is Outcome.PASS, result
    assert "lists only the oldest 10000 rows; 0 of" in result.detail


# ----------------------------------------------------------- skips, errors


def test_clock_checks_skip_on_a_service_without_test_clock(make_server: MakeServer):
    server = make_server(test_clock=False)
    wanted = {"cache_tiers": True, "heartbeat_expiry": True, "no_grace": False}
    results = run_checks(server.url, [TEST_WEBHOOK_SECRET], wanted, settle_seconds=0)
    assert [(r.name, r.outcome) for r in results] == [
        ("cache_tiers", Outcome.SKIP),
        ("heartbeat_expiry", Outcome.SKIP),
    ]
    assert all(r.detail == CLOCK_REASON for r in results)
    assert CLOCK_REASON == "needs a service started with --test-clock"


def test_every_check_skips_without_the_webhook_secret(make_server: MakeServer):
    server = make_server()
    results = run_checks(server.url, [], ALL, settle_seconds=0)
    assert [(r.name, r.outcome) for r in results] == [(n, Outcome.SKIP) for n in CHECKS]
    assert all(r.detail == SIGNING_REASON for r in results)


def test_a_clock_moved_by_someone_else_is_an_error_not_a_verdict(
    make_server: MakeServer, monkeypatch: pytest.MonkeyPatch
):
    server = make_server()
    real = Target.advance

    def rogue(self: Target, seconds: float) -> None:
        real(self, seconds + 5)  # as if another client moved the clock meanwhile

    monkeypatch.setattr(Target, "advance", rogue)
    result = run_one(server, "cache_tiers")
    assert result.outcome is Outcome.ERROR, result
    assert "3604.000 s passed on the service's clock where 3599 s were asked for" in result.detail


def test_an_unknown_check_and_an_unreachable_target_are_errors():
    with refusing_port() as port:
        url = f"http://127.0.0.1:{port}"
        results = run_checks(url, [TEST_WEBHOOK_SECRET], {"no_grace": True, "typo": True})
    assert outcomes(results)["no_grace"][0] is Outcome.ERROR
    assert "ConnectError" in outcomes(results)["no_grace"][1]
    assert outcomes(results)["typo"] == (
        Outcome.ERROR,
        "inconclusive: no such check; known: " + ", ".join(CHECKS),
    )


# -------------------------------------------------------------- provision


def test_provisioned_licenses_validate_and_round_trip_through_a_file(
    make_server: MakeServer, tmp_path: Path
):
    server = make_server()
    creds = provision(server.url, [TEST_WEBHOOK_SECRET], 40, seed=7, prefix="Load Test")
    assert len({c.email for c in creds}) == 40
    assert all(c.email.startswith("load-test-7-") for c in creds)
    with httpx.Client(base_url=server.url) as http:
        for cred in creds[::13]:
            body = {
                "operation": "validate",
                "credentials": {"email": cred.email, "token": cred.token},
            }
            assert http.post("/validate-unified", json=body).status_code == 200
    path = tmp_path / "creds.jsonl"
    write_credentials(path, creds)
    assert read_credentials(path) == creds
    # The same prefix and seed meet the same licenses: the checkout is a duplicate.
    again = provision(server.url, [TEST_WEBHOOK_SECRET], 3, seed=7, prefix="Load Test")
    assert again == creds[:3]


def test_provisioning_with_the_wrong_secret_says_so(make_server: MakeServer):
    server = make_server()
    with pytest.raises(ProvisionError) as refused:
        provision(server.url, ["whsec_not_the_targets"], 5, seed=1)
    assert "the target refused the signature: is STRIPE_WEBHOOK_SECRET the target's?" in str(
        refused.value
    )
    with pytest.raises(ProvisionError, match="no webhook secret"):
        provision(server.url, [], 5, seed=1)
