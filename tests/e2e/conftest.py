"""Real `licensing-harness` processes on 127.0.0.1, started through the CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from licensing_service.service.licensing import LicensingService
from tests.live import free_port

CLI = [sys.executable, "-m", "licensing_harness"]


def slow_down_validation(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """The variant a latency threshold must catch: every validation of an
    in-process server takes ``seconds`` longer."""
    original = LicensingService.validate

    def slow_validate(self: LicensingService, *args: Any, **kwargs: Any) -> Any:
        time.sleep(seconds)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(LicensingService, "validate", slow_validate)


@dataclass
class Served:
    url: str
    db: Path
    log: Path
    process: subprocess.Popen[bytes]

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=60, env=env, check=False
    )


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    started: list[Served] = []

    def start(*flags: str, extra_env: dict[str, str] | None = None) -> Served:
        port = free_port()
        db = tmp_path / f"e2e-{port}.db"
        log = tmp_path / f"e2e-{port}.log"
        env = {**os.environ, "LH_ENVIRONMENT": "test", **(extra_env or {})}
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [*CLI, "serve", "--port", str(port), "--db", str(db), *flags],
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        served = Served(f"http://127.0.0.1:{port}", db, log, process)
        started.append(served)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"serve exited early:\n{served.log_text()}")
            try:
                if httpx.get(served.url + "/health/ready", timeout=1).status_code == 200:
                    return served
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"serve did not become ready:\n{served.log_text()}")

    yield start
    for served in started:
        if served.process.poll() is None:
            os.killpg(served.process.pid, signal.SIGTERM)
            try:
                served.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(served.process.pid, signal.SIGKILL)
