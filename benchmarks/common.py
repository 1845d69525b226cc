"""What the benchmarks share: CPU steal readings and pinned server processes."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx

from loadtests.harness.processes import stop_group
from loadtests.harness.steal import cpu_times as harness_cpu_times

ROOT = Path(__file__).resolve().parent.parent
CLI = ROOT / ".venv" / "bin" / "licensing-harness"
PYTHON = ROOT / ".venv" / "bin" / "python"


def cpu_times() -> tuple[int, int]:
    times = harness_cpu_times()
    if times is None:
        raise SystemExit("no /proc/stat: these benchmarks need Linux to see CPU steal")
    return times


def wait_ready(url: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"server at {url} did not become ready")


def start(cmd: list[str], core: int, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["taskset", "-c", str(core), *cmd],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    stop_group(proc, timeout=10)
