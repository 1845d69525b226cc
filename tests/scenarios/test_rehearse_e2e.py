"""Whole rehearsals against the reference service, through the CLI and in-process:
the shipped fast variants pass, a planted broken service fails, Ctrl-C runs the
rollbacks, a target without the harness routes is skipped with the reason."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
import pytest

from licensing_service.contract import routes
from loadtests.harness.processes import free_port
from scenarios.cli import shipped
from scenarios.expectations import Outcome
from scenarios.model import load_rehearsal
from scenarios.runner import RunOptions, run_scenario
from tests.scenarios.conftest import Reference

CLI = [sys.executable, "-m", "licensing_harness", "rehearse"]
pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def rehearse(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def test_db_outage_fast_passes_with_a_report(tmp_path: Path) -> None:
    done = rehearse("db-outage", "--fast", "--report", str(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "\r" not in out  # not a TTY: plain lines, no carriage returns
    assert "breaker OPEN (failures 5" in out
    assert "PASS  breaker_opens" in out
    assert "db-outage (fast): PASS" in out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["result"] == "pass" and summary["exit_code"] == 0
    (scenario,) = summary["scenarios"]
    assert {v["name"] for v in scenario["verdicts"]} >= {"breaker_opens", "wrong_answers"}
    assert scenario["fault_windows"][0]["names"] == ["db.errors"]
    suite = ET.parse(tmp_path / "junit.xml").getroot().find("testsuite")
    assert suite is not None and suite.get("failures") == "0"
    assert (tmp_path / "db-outage.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("name", ["db-outage", "db-unreachable", "db-blackhole"])
def test_a_breaker_outage_fails_against_a_breaker_that_never_opens(name: str) -> None:
    # db-unreachable: the same on PostgreSQL made unreachable through a proxy;
    # db-blackhole: through a proxy that answers nothing.
    reh = load_rehearsal(shipped()[name])
    result = run_scenario(
        reh,
        RunOptions(
            fast=True,
            service_env={"LH_BREAKER_THRESHOLD": "1000000000"},
            out=io.StringIO(),
            live=False,
        ),
    )
    if result.skipped is not None:  # on PostgreSQL, where none answers
        pytest.skip(result.skipped)
    verdicts = {v.name: v for v in result.verdicts}
    assert verdicts["breaker_opens"].outcome is Outcome.FAIL
    assert verdicts["breaker_opens"].observed == "never opened"
    assert verdicts["wrong_answers"].outcome is Outcome.PASS  # what still holds, holds
    assert result.exit_code == 1


def test_db_slow_fails_when_slow_calls_are_not_judged() -> None:
    # LH_BREAKER_SLOW_CALL_MS=0: a 40 ms database is waited on, call after call.
    reh = load_rehearsal(shipped()["db-slow"])
    result = run_scenario(
        reh,
        RunOptions(
            fast=True, service_env={"LH_BREAKER_SLOW_CALL_MS": "0"}, out=io.StringIO(), live=False
        ),
    )
    verdicts = {v.name: v for v in result.verdicts}
    assert verdicts["breaker_opens"].outcome is Outcome.FAIL
    assert verdicts["breaker_opens"].observed == "never opened"
    assert result.exit_code == 1


@pytest.mark.parametrize("name", sorted(set(shipped()) - {"db-outage"}))
def test_every_shipped_rehearsal_passes_fast(name: str) -> None:
    # db-outage's run is the CLI test above.
    reh = load_rehearsal(shipped()[name])
    result = run_scenario(reh, RunOptions(fast=True, out=io.StringIO(), live=False))
    if result.skipped is not None:  # the ones on PostgreSQL, where none answers
        pytest.skip(result.skipped)
    assert result.exit_code == 0, [v for v in result.verdicts if v.outcome is not Outcome.PASS]


HANGING = """
[scenario]
name = "hang"
needs = ["faults"]

[[method]]
kind = "fault"
db = { errors = true }

[[method]]
kind = "wait"
seconds = 120

[[rollbacks]]
kind = "fault"
clear = true

[[expect]]
kind = "wrong_answers"
"""


def _sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def db_failing(url: str) -> bool:
    faults = httpx.get(url + routes.HARNESS_FAULTS, timeout=5)
    return "db.errors" in faults.json()["active"]


def test_ctrl_c_runs_the_rollbacks(tmp_path: Path, reference: Reference) -> None:
    path = tmp_path / "hang.toml"
    path.write_text(HANGING, encoding="utf-8")
    args = [
        *CLI,
        str(path),
        "--target",
        reference.url,
        "--webhook-secret",
        reference.secrets[0],
        "--report",
        str(tmp_path / "report"),
    ]
    with subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # As from a terminal. A suite started in the background by a
        # non-interactive shell (`... &`) runs with SIGINT ignored, which its
        # children inherit; Python then leaves Ctrl-C ignored, as it should.
        preexec_fn=_sigint_default,
    ) as proc:
        killer = threading.Timer(90, proc.kill)  # never hang the suite
        killer.start()
        try:
            assert proc.stdout is not None
            seen = []
            for line in proc.stdout:
                seen.append(line)
                if "faults: db.errors" in line:
                    break
            assert db_failing(reference.url), "".join(seen)
            time.sleep(0.3)
            proc.send_signal(signal.SIGINT)
            rest = proc.stdout.read()
            code = proc.wait(30)
        finally:
            killer.cancel()
    assert code == 2, rest
    assert "interrupted" in rest
    assert not db_failing(reference.url)  # the rollback cleared it
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["scenarios"][0]["interrupted"] is True


def test_a_target_without_harness_routes_is_skipped_with_the_reason(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "LH_ENVIRONMENT": "test", "STRIPE_WEBHOOK_SECRET": "whsec_skiptest"}
    cmd = [
        sys.executable,
        "-m",
        "licensing_service",
        "serve",
        "--port",
        str(port),
        "--db",
        str(tmp_path / "x.db"),
    ]
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + routes.HEALTH_READY, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        done = rehearse(
            "db-outage",
            "clock-jump",
            "--target",
            url,
            "--webhook-secret",
            "whsec_skiptest",
            "--report",
            str(tmp_path / "r"),
        )
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)
    assert "db-outage: SKIP: needs faults: the target has no /__harness__/faults" in done.stdout
    assert "clock-jump: SKIP: needs test_clock: the target has no /__harness__/clock" in done.stdout
    assert done.returncode == 2  # nothing judged is no pass
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert [s["result"] for s in summary["scenarios"]] == ["skip", "skip"]


def test_a_refused_file_exits_2_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(HANGING.replace("seconds = 120", "seconds = 120\nuntill = 3"), encoding="utf-8")
    done = rehearse(str(path))
    assert done.returncode == 2
    assert f"{path}: method[2].untill: unknown key; expected one of:" in done.stderr


def test_unknown_scenario_and_list() -> None:
    assert rehearse("no-such").returncode == 2
    listed = rehearse("--list")
    assert listed.returncode == 0 and "db-outage" in listed.stdout


FAILING_STEP = """
[scenario]
name = "failing-step"
needs = ["faults"]

[[method]]
kind = "fault"
db = { errors = true }

[[method]]
kind = "fault"
stripe = { errors = true }
label = "a step the target refuses"

[[method]]
kind = "wait"
seconds = 30

[[rollbacks]]
kind = "fault"
clear = true

[[expect]]
kind = "wrong_answers"
"""


def test_a_failed_step_stops_the_method_and_the_rollbacks_run(
    reference: Reference, monkeypatch: pytest.MonkeyPatch
) -> None:
    from licensing_service.contract.faults import FaultsRequest
    from scenarios.fault_control import FaultControl
    from scenarios.model import loads_rehearsal
    from scenarios.steps import StepFailed

    real = FaultControl.apply

    def refuse_stripe(self: FaultControl, request: FaultsRequest) -> list[str]:
        if request.stripe is not None:
            raise StepFailed("POST /__harness__/faults answered 400 (planted)")
        return real(self, request)

    monkeypatch.setattr(FaultControl, "apply", refuse_stripe)
    started = time.monotonic()
    result = run_scenario(
        loads_rehearsal(FAILING_STEP),
        RunOptions(
            target=reference.url,
            webhook_secrets=tuple(reference.secrets),
            out=io.StringIO(),
            live=False,
        ),
    )
    assert time.monotonic() - started < 25  # the 30 s wait never ran
    verdicts = {v.name: v for v in result.verdicts}
    assert verdicts["method"].outcome is Outcome.ERROR
    assert "planted" in verdicts["method"].detail
    assert result.exit_code == 2
    assert not db_failing(reference.url)  # the rollback cleared the first step's fault
    assert result.recording is not None
    phases = [(s.phase, s.ok) for s in result.recording.steps]
    assert phases == [("method", True), ("method", False), ("rollbacks", True)]
