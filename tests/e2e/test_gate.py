"""The gate, end to end: it passes a healthy service and fails a slow one.

The service runs in this process (tests/live.py), so a variant is one
monkeypatch away; the load comes from a real Locust subprocess.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from licensing_service.service.licensing import LicensingService
from loadtests.harness.cluster import Distribution
from loadtests.harness.gate import GateOptions, main
from tests.conftest import TEST_WEBHOOK_SECRET
from tests.e2e.conftest import slow_down_validation
from tests.live import LiveServer

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# max_steal = 100: these runs judge a service made slow on purpose (150 ms a
# request), so machine steal must not turn the expected FAIL into inconclusive;
# the steal rule itself is tested in tests/unit/test_gate_verdicts.py.
CONFIG = """
[load]
workload = "validation"
users = 8
spawn_rate = 8
duration = "6s"
warmup = "1s"
customers = 30
max_steal = 100

[[threshold]]
select = "validate"
metric = "p99"
max = 100.0

[[threshold]]
select = "validate"
metric = "error_rate"
max = 0

[checks]
cache_tiers = false
heartbeat_expiry = false
conflict_takeover = false
no_grace = false
webhook_idempotency = false
"""


def run_gate(
    server: LiveServer,
    tmp_path: Path,
    config: str = CONFIG,
    distribution: Distribution | None = None,
    out: io.StringIO | None = None,
) -> tuple[int, dict[str, Any]]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "gate.toml"
    path.write_text(config)
    report = tmp_path / "report"
    code = main(
        GateOptions(
            target=server.url,
            config=path,
            report_dir=report,
            webhook_secrets=(TEST_WEBHOOK_SECRET,),
            pin=False,  # never pin the test process
            distribution=distribution if distribution is not None else Distribution(),
            out=out if out is not None else io.StringIO(),
        )
    )
    written = report / "summary.json"  # none when the gate could not run at all
    return code, json.loads(written.read_text()) if written.exists() else {}


def verdict(summary: dict[str, Any], name: str) -> str:
    return next(v["outcome"] for v in summary["verdicts"] if v["name"] == name)


def test_the_gate_passes_a_healthy_service(
    make_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    out = io.StringIO()  # not a terminal, as in CI
    code, summary = run_gate(make_server(), tmp_path, out=out)
    assert code == 0, summary["verdicts"]
    printed = out.getvalue()
    assert "gate: 6/6 s (100%), load done, checks done" in printed
    assert "\r" not in printed
    assert verdict(summary, "validate p99 <= 100 ms") == "pass"
    report = tmp_path / "report"
    for name in ("locust.html", "junit.xml", "latency.png", "throughput.png"):
        assert (report / name).stat().st_size > 0, name


def test_150_ms_added_to_validation_fails_the_latency_threshold(
    make_server: Callable[..., LiveServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = make_server()
    slow_down_validation(monkeypatch, seconds=0.150)
    code, summary = run_gate(server, tmp_path)
    assert code == 1
    assert verdict(summary, "validate p99 <= 100 ms") == "fail"
    assert verdict(summary, "validate error_rate <= 0") == "pass"


def test_harness_problems_exit_2_not_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[load]\nusers = "many"\n')
    out = io.StringIO()
    assert main(GateOptions(config=bad, report_dir=tmp_path / "r", pin=False, out=out)) == 2
    unreachable = GateOptions(
        target="http://127.0.0.1:9", report_dir=tmp_path / "r", pin=False, out=out
    )
    assert main(unreachable) == 2


def test_abort_early_stops_a_run_that_has_already_failed(
    make_server: Callable[..., LiveServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = make_server()
    original = LicensingService.validate

    def slow_validate(self: LicensingService, *args: Any, **kwargs: Any) -> Any:
        time.sleep(0.150)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(LicensingService, "validate", slow_validate)
    config = CONFIG.replace('duration = "6s"', 'duration = "40s"').replace(
        'warmup = "1s"', 'warmup = "2s"\nabort_early = true'
    )
    started = time.monotonic()
    code, summary = run_gate(server, tmp_path, config)
    assert code == 1
    assert time.monotonic() - started < 30  # stopped long before its 40 s
    assert "validate p99" in (summary["summary"]["aborted"] or "")


def test_the_open_model_keeps_its_arrival_rate(
    make_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    config = (
        CONFIG.replace('workload = "validation"', 'workload = "open"')
        .replace("users = 8", "users = 2\nopen_rate = 40.0")
        .replace('select = "validate"', 'select = "validate open"')
    )
    code, summary = run_gate(make_server(), tmp_path, config)
    assert code == 0, summary["verdicts"]
    open_model = summary["summary"]["open_model"]
    assert open_model["target_rate"] == pytest.approx(40.0)
    # 6 s at 40/s from two users: about 240 arrivals, none dropped by a healthy service.
    assert 200 <= open_model["iterations"] <= 250
    assert open_model["dropped"] == 0
    assert summary["summary"]["endpoints"]["validate open"]["corrected"]["count"] > 0
