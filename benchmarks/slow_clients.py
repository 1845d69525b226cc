"""Validation latency of a well-behaved client, without and with 200 hostile
connections (slow-drip heads and bodies, half-open, idle, oversized) open.

The service runs pinned to core 0 (default limits: 10 s head and body
deadlines); the hostile connections come from a process of their own and the
well-behaved client from this one, both on core 1. Each run measures the same
service twice, first alone, then with the hostile connections held open, so
the ratio of the two is read on one machine state even when the absolute
figures move with other load. CPU steal from /proc/stat is given per phase.

    .venv/bin/python benchmarks/slow_clients.py --runs 3 --seconds 15
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from common import PYTHON, ROOT, cpu_times

from licensing_service.contract import routes
from loadtests.harness.steal import steal_pct
from scenarios.hostile_service import reference_service

TTY = sys.stdout.isatty()


@dataclass(frozen=True)
class Phase:
    name: str
    count: int
    errors: int
    p50_ms: float
    p99_ms: float
    steal: float | None


def say(line: str) -> None:
    print(line, flush=True)


def gate_p99_ms() -> float:
    """The gate's validate p99 threshold, from loadtests/gate.toml."""
    config: dict[str, Any] = tomllib.loads((ROOT / "loadtests" / "gate.toml").read_text())
    for threshold in config.get("threshold", []):
        if threshold.get("select") == "validate" and threshold.get("metric") == "p99":
            return float(threshold["max"])
    raise SystemExit("loadtests/gate.toml has no validate p99 threshold")


def measure(name: str, url: str, body: dict[str, Any], seconds: float) -> Phase:
    """Validate in a closed loop on one keep-alive connection for ``seconds``."""
    latencies: list[float] = []
    errors = 0
    before = cpu_times()
    stop_at = time.monotonic() + seconds
    next_note = time.monotonic() + 3
    with httpx.Client(timeout=5) as client:
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            try:
                ok = client.post(url + routes.VALIDATE_UNIFIED, json=body).status_code == 200
            except httpx.HTTPError:
                ok = False
            latencies.append(time.perf_counter() - started)
            errors += not ok
            if time.monotonic() >= next_note:
                next_note = time.monotonic() + 3
                line = f"  {name}: {len(latencies)} validations, {errors} errors"
                print(("\r" + line) if TTY else line, end="" if TTY else "\n", flush=True)
    if TTY:
        print()
    latencies.sort()
    p99_index = min(len(latencies) - 1, int(len(latencies) * 0.99))
    return Phase(
        name,
        len(latencies),
        errors,
        round(statistics.median(latencies) * 1000, 3),
        round(latencies[p99_index] * 1000, 3),
        steal_pct(before, cpu_times()),
    )


def one_run(number: int, seconds: float, count: int, env: dict[str, str]) -> tuple[Phase, Phase]:
    with (
        tempfile.TemporaryDirectory(prefix="slow-clients-") as work,
        reference_service(Path(work), customers=10, core=0, env=env) as service,
    ):
        active = next(c for c in service.credentials if c["status"] == "active")
        body = {
            "operation": "validate",
            "credentials": {"email": active["email"], "token": active["token"]},
            "device": {"machineFingerprint": "bench-till"},
        }
        measure("warm-up", service.url, body, 2)
        alone = measure(f"run {number} alone", service.url, body, seconds)
        hostile = subprocess.Popen(
            [
                "taskset", "-c", "1", str(PYTHON), "-m", "scenarios.hostile", "connections",
                "--url", service.url, "--count", str(count), "--seconds", str(seconds + 6),
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        try:
            time.sleep(3)  # the connections open
            beside = measure(f"run {number} with {count} hostile", service.url, body, seconds)
            out, _ = hostile.communicate(timeout=seconds + 60)
        finally:
            if hostile.poll() is None:
                hostile.kill()
        say("  " + out.strip().splitlines()[-1])
    return alone, beside


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--count", type=int, default=200, help="hostile connections")
    parser.add_argument(
        "--deadline",
        type=float,
        default=None,
        help="LH_HEADER_TIMEOUT_SECONDS and LH_BODY_TIMEOUT_SECONDS for the service"
        " (default: its own, 10 s; 300 holds every hostile connection for the whole run,"
        " as the service did before it had deadlines)",
    )
    args = parser.parse_args()
    env = {}
    if args.deadline is not None:
        env = {"LH_HEADER_TIMEOUT_SECONDS": str(args.deadline)}
        env["LH_BODY_TIMEOUT_SECONDS"] = str(args.deadline)
    threshold = gate_p99_ms()
    results = []
    for number in range(1, args.runs + 1):
        say(
            f"run {number}/{args.runs}: {args.seconds:.0f} s alone, then {args.seconds:.0f} s"
            f" beside {args.count} hostile connections"
        )
        alone, beside = one_run(number, args.seconds, args.count, env)
        results.append((alone, beside))
        for phase in (alone, beside):
            say(
                f"  {phase.name}: {phase.count} validations, {phase.errors} errors, "
                f"p50 {phase.p50_ms} ms, p99 {phase.p99_ms} ms, steal {phase.steal}%"
            )
        say(f"  p99 ratio with/without: {beside.p99_ms / alone.p99_ms:.2f}")
    say("")
    say(
        "| run | alone p50 | alone p99 | hostile p50 | hostile p99 | p99 ratio | errors"
        " | steal alone / hostile |"
    )
    say("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for number, (alone, beside) in enumerate(results, 1):
        say(
            f"| {number} | {alone.p50_ms} ms | {alone.p99_ms} ms | {beside.p50_ms} ms | "
            f"{beside.p99_ms} ms | {beside.p99_ms / alone.p99_ms:.2f} | "
            f"{alone.errors} / {beside.errors} | {alone.steal}% / {beside.steal}% |"
        )
    median_hostile_p99 = statistics.median(b.p99_ms for _, b in results)
    errors = sum(a.errors + b.errors for a, b in results)
    verdict = "within" if median_hostile_p99 <= threshold and errors == 0 else "OUTSIDE"
    say(
        f"median p99 beside hostile connections {median_hostile_p99} ms: {verdict} the gate's "
        f"validate p99 threshold ({threshold} ms); {errors} errors"
    )
    return 0 if verdict == "within" else 1


if __name__ == "__main__":
    sys.exit(main())
