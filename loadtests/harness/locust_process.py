"""The load: a Locust workload in a subprocess of its own, and the wait for it (bounded).

The gate's own process does not take part in the load, so a slow gate cannot slow the
load it measures.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

import loadtests
from fixtures.progress import Progress
from loadtests.harness.errors import GateError
from loadtests.harness.gate_config import GateConfig
from loadtests.harness.processes import free_port, pinned, stop_group

WORKLOADS = {
    "validation": "validation_fleet.py",
    "sessions": "session_fleet.py",
    "webhooks": "webhook_storm.py",
    "mixed": "mixed_fleet.py",
    "open": "open_model.py",
}


def locust_env(
    creds: Path,
    stream: Path | None,
    secrets: Sequence[str],
    report_dir: Path,
    config: GateConfig,
    config_path: Path | None,
) -> dict[str, str]:
    """The workload's inputs, which Locust's command line can't carry: files, the
    run's length and rates, and (abort-early) the gate file to judge by."""
    env = {
        **os.environ,
        "LH_LOAD_CREDENTIALS": str(creds),
        "LH_LOAD_RESULTS": str(report_dir / "results.json"),
        "LH_LOAD_HDR": str(report_dir / "histograms.json"),
        "LH_LOAD_USERS": str(config.load.users),
        "LH_LOAD_SECONDS": str(config.load.duration_s),
        "LH_LOAD_WARMUP": str(config.load.warmup_s),
        "LH_OPEN_RATE": str(config.load.open_rate),
        "LH_OPEN_SECONDS": str(config.load.duration_s),
    }
    if config.load.abort_early and config_path is not None:
        env["LH_GATE_CONFIG"] = str(config_path)
    if stream is not None:
        env["LH_LOAD_STREAM"] = str(stream)
        env["LH_WEBHOOK_SECRET"] = ",".join(secrets)
    (report_dir / "results.json").unlink(missing_ok=True)
    (report_dir / "histograms.json").unlink(missing_ok=True)
    return env


def locustfile_of(config: GateConfig) -> Path:
    return Path(loadtests.__file__).parent / WORKLOADS[config.load.workload]


def locust_command(config: GateConfig, base: str, report_dir: Path) -> list[str]:
    """Locust, headless, its HTML report in ``report_dir``: one process, or (with
    ``--master`` options added) the master of a distributed run."""
    load = config.load
    return [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(locustfile_of(config)),
        "--headless",
        "--host",
        base,
        "--users",
        str(load.users),
        "--spawn-rate",
        str(load.spawn_rate),
        "--run-time",
        f"{int(load.duration_s)}s",
        "--stop-timeout",
        "5",
        "--html",
        str(report_dir / "locust.html"),
        "--only-summary",
        "--exit-code-on-error",
        "0",
        "--loglevel",
        "WARNING",
    ]


def start_locust(
    config: GateConfig, base: str, env: dict[str, str], report_dir: Path, *, pin: bool
) -> subprocess.Popen[bytes]:
    """Locust, headless, on the second core, its log and HTML report in ``report_dir``."""
    load = config.load
    cmd = locust_command(config, base, report_dir)
    if load.processes != 1:
        # A port of our own: with the default one, two runs on a machine mix their workers.
        port = str(free_port())
        cmd += [
            "--processes",
            str(load.processes),
            "--master-bind-host",
            "127.0.0.1",
            "--master-bind-port",
            port,
            "--master-host",
            "127.0.0.1",
            "--master-port",
            port,
        ]
    # The child keeps its own copy of the descriptor; ours is closed at once.
    with (report_dir / "locust.log").open("wb") as log:
        return subprocess.Popen(
            pinned(cmd, 1, pin),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait(
    locust: subprocess.Popen[bytes],
    checker: threading.Thread,
    config: GateConfig,
    out: TextIO,
    workers: Callable[[], str] | None = None,
) -> None:
    """Progress while the load runs (with ``workers``' note on a master: who is
    connected); bounded even if Locust hangs."""
    duration = config.load.duration_s
    started = time.monotonic()
    with Progress("gate", duration, unit="s", stream=out) as progress:
        while locust.poll() is None or checker.is_alive():
            elapsed = time.monotonic() - started
            if elapsed > duration + 90:
                stop_group(locust)
                raise GateError("the load did not finish within its duration + 90 s")
            note = _state(locust.poll() is None, checker.is_alive())
            if workers is not None:
                note = f"{workers()}, {note}"
            progress.update(min(elapsed, duration), note)
            time.sleep(0.5)
        progress.update(duration, _state(False, False))


def _state(load: bool, checks: bool) -> str:
    state = "load running" if load else "load done"
    return state + (", checks running" if checks else ", checks done")
