"""The gate on Locust's master and workers, against a real service on 127.0.0.1.

A master and two workers, started as on other machines (``gate --worker``): the merged
counts are the sum of what the workers counted, and the merged histograms are exactly
the merge of what they sent. With local workers (``--workers 2``) a slow service still
fails the gate; and a worker that never comes ends the run at its bound, exit 2.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hdrh.histogram import HdrHistogram

from loadtests.harness.cluster import Distribution
from loadtests.harness.histograms import EndpointHistograms
from tests.e2e.conftest import slow_down_validation
from tests.e2e.test_gate import CONFIG, run_gate, verdict
from tests.live import LiveServer, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# The whole mixed fleet (validation, sessions, the webhook storm), so that every input
# is shared out; no warm-up, so that every request counts in the endpoints' figures; and
# any failed request fails the gate (two workers driving one license would show here).
MIXED = (
    CONFIG.replace('workload = "validation"', 'workload = "mixed"')
    .replace("users = 8", "users = 10")
    .replace("spawn_rate = 8", "spawn_rate = 10")
    .replace('warmup = "1s"', 'warmup = "0s"')
    .replace("[checks]", '[[threshold]]\nselect = "*"\nmetric = "error_rate"\nmax = 0\n\n[checks]')
)


def start_workers(tmp_path: Path, port: int, count: int) -> list[subprocess.Popen[bytes]]:
    """``gate --worker`` processes for a master on ``port``, each in a session of its own
    (a test may kill one, its Locust child with it), writing their parts
    (``LH_LOAD_PARTS``) for the test to add up."""
    env = {**os.environ, "LH_LOAD_PARTS": str(tmp_path / "parts")}
    argv = [sys.executable, "-m", "licensing_harness", "gate", "--worker"]
    argv += ["--master-host", "127.0.0.1", "--master-port", str(port)]
    workers = []
    for n in range(1, count + 1):
        with (tmp_path / f"worker-{n}.out").open("wb") as out:
            workers.append(
                subprocess.Popen(
                    argv,
                    env=env,
                    cwd=tmp_path,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
    return workers


def end_workers(workers: list[subprocess.Popen[bytes]]) -> list[str]:
    """Wait for the workers to end with their master; kill (and name) any that do not."""
    stuck = []
    for worker in workers:
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
            stuck.append(str(worker.args))
    return stuck


@pytest.fixture
def remote_workers(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """Two workers started as on other machines, for a master on a port of their own."""
    port = free_port()
    workers = start_workers(tmp_path, port, 2)
    yield port, tmp_path / "parts"
    assert end_workers(workers) == [], "a worker did not end with its master"


def _recorded(encoded: str | None) -> list[tuple[int, int]]:
    if encoded is None:
        return []
    histogram = HdrHistogram.decode(encoded.encode("ascii"))
    return [
        (v.value_iterated_to, v.count_at_value_iterated_to)
        for v in histogram.get_recorded_iterator()
    ]


def _exactly(data: dict[str, Any]) -> dict[str, Any]:
    """Every histogram as its recorded (value, count) pairs, the rest as it is."""
    return {
        "endpoints": {
            name: {kind: _recorded(h) for kind, h in kinds.items()}
            for name, kinds in sorted(data["endpoints"].items())
        },
        "timeline": {
            second: (
                bucket["requests"],
                bucket["failures"],
                _recorded(bucket["ok"]),
                {n: _recorded(h) for n, h in sorted(bucket["by_name"].items())},
            )
            for second, bucket in sorted(data["timeline"].items(), key=lambda s: int(s[0]))
        },
    }


def test_the_master_merges_two_workers_exactly(
    make_server: Callable[..., LiveServer],
    tmp_path: Path,
    remote_workers: tuple[int, Path],
) -> None:
    port, parts_dir = remote_workers
    spread = Distribution(master=True, expect_workers=2, port=port, wait_s=60)
    code, summary = run_gate(make_server(), tmp_path, MIXED, spread)
    assert code == 0, summary["verdicts"]
    assert verdict(summary, "workers") == "pass"
    assert summary["meta"]["workers"]["at_start"] == 2

    parts = [json.loads(p.read_text()) for p in sorted(parts_dir.glob("worker-*.json"))]
    assert len(parts) == 2
    # Each worker got its own share: every license and webhook event went to one of them.
    shares = sorted((p["share"]["index"], p["share"]["of"]) for p in parts)
    assert shares == [(0, 2), (1, 2)]
    assert sum(p["share"]["licenses"] for p in parts) == 30  # load.customers
    assert all(p["share"]["deliveries"] > 0 for p in parts)
    # What each worker counted itself, from Locust's request event: both drove load.
    counted: dict[str, list[int]] = {}
    for part in parts:
        assert sum(n for n, _ in part["counts"].values()) > 20, part["counts"]
        for name, (requests, failures) in part["counts"].items():
            mine = counted.setdefault(name, [0, 0])
            mine[0] += requests
            mine[1] += failures
    endpoints = summary["summary"]["endpoints"]
    merged = {name: [e["requests"], e["failures"]] for name, e in endpoints.items()}
    assert merged == counted
    assert {"validate", "webhook"} <= set(merged)  # the storm's share went out too
    timeline = summary["summary"]["timeline"]
    assert sum(p["requests"] for p in timeline) == sum(n for n, _ in counted.values())

    # The master's merged histograms are exactly the merge of what the workers sent.
    reference = EndpointHistograms(start=parts[0]["histograms"]["start"])
    for part in parts:
        reference.merge_encoded(part["histograms"])
    master = json.loads((tmp_path / "report" / "histograms.json").read_text())
    assert _exactly(master) == _exactly(reference.encode())
    assert _exactly(master)["endpoints"]["validate"]["ok"]  # and there is something in it


def test_a_slow_service_fails_the_distributed_gate(
    make_server: Callable[..., LiveServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = make_server()
    slow_down_validation(monkeypatch, seconds=0.150)
    code, summary = run_gate(server, tmp_path, CONFIG, Distribution(local_workers=2))
    assert code == 1
    assert verdict(summary, "validate p99 <= 100 ms") == "fail"
    assert verdict(summary, "workers") == "pass"  # judged on both workers' requests
    assert summary["meta"]["workers"]["at_start"] == 2


def test_a_worker_that_never_comes_ends_the_gate_with_exit_2_in_bounded_time(
    make_server: Callable[..., LiveServer], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    spread = Distribution(master=True, expect_workers=1, port=port, wait_s=2)
    started = time.monotonic()
    code, _ = run_gate(make_server(), tmp_path, CONFIG, spread)
    assert code == 2
    assert time.monotonic() - started < 30  # provisioning, the master's start, 2 s of wait
    error = capsys.readouterr().err
    assert "0 of 1 Locust workers connected to the master on 127.0.0.1:" in error
    assert f"--master-port {port}" in error
    # The master is gone: its port can be bound again.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_a_worker_lost_mid_run_makes_the_gate_inconclusive(
    make_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    port = free_port()
    workers = start_workers(tmp_path, port, 2)
    roll = tmp_path / "report" / "workers.json"

    def kill_one_once_running() -> None:
        # Waits for the master's roll to say the load runs (bounded), then kills worker 1
        # and its Locust child at once: no goodbye, no final report, as a machine lost.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                if json.loads(roll.read_text())["state"] == "running":
                    os.killpg(workers[0].pid, signal.SIGKILL)
                    return
            time.sleep(0.1)

    killer = threading.Thread(target=kill_one_once_running, daemon=True)
    killer.start()
    try:
        config = CONFIG.replace('duration = "6s"', 'duration = "9s"')
        spread = Distribution(master=True, expect_workers=2, port=port, wait_s=60)
        code, summary = run_gate(make_server(), tmp_path, config, spread)
    finally:
        killer.join(timeout=5)
        end_workers(workers)
    assert code == 2, summary["verdicts"]
    lost = next(v for v in summary["verdicts"] if v["name"] == "workers")
    assert lost["outcome"] == "error"
    assert "1 lost during the run" in lost["detail"]
