"""The service the gate judges: an external ``--target``, checked for life, or the
reference service started in a subprocess (a temporary SQLite file, ``--test-clock``,
a generated webhook secret) on the first core, and stopped with its process group;
and :class:`ServiceProcess`, the same service as a process that can be killed with
SIGKILL and started again on the same database (the crash-restart rehearsal).
"""

from __future__ import annotations

import contextlib
import os
import secrets as secrets_module
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import httpx

from licensing_service.contract import routes
from loadtests.harness.errors import GateError
from loadtests.harness.processes import free_port, pinned, sigint_held, stop_group, stop_groups


@contextlib.contextmanager
def service(
    target: str | None,
    webhook_secrets: Sequence[str],
    work: Path,
    *,
    pin: bool,
    extra_env: Mapping[str, str] | None = None,
) -> Iterator[tuple[str, list[str], bool]]:
    """``(base URL, webhook secrets, managed)`` for the run's duration: ``target``
    checked for life, or (None) the reference service started in ``work``, with
    ``extra_env`` added to its environment (the rehearsals set its breaker)."""
    if target is not None:
        base = target.rstrip("/")
        _reachable(base)
        secrets = list(webhook_secrets) or _env_secrets()
        yield base, secrets, False
        return
    secret = "whsec_gate_" + secrets_module.token_hex(16)
    port = free_port()
    env = {
        **os.environ,
        "STRIPE_WEBHOOK_SECRET": secret,
        "LH_ENVIRONMENT": "test",
        "LH_LOG_LEVEL": "warning",
        **(extra_env or {}),
    }
    cmd = [
        sys.executable,
        "-m",
        "licensing_service",
        "serve",
        "--test-clock",
        "--port",
        str(port),
        "--db",
        str(work / "gate.db"),
    ]
    log = (work / "service.log").open("wb")
    process = subprocess.Popen(
        pinned(cmd, 0, pin),
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, process, work / "service.log")
        yield base, [secret], True
    finally:
        stop_group(process)
        log.close()


def _env_secrets() -> list[str]:
    raw = os.environ.get("STRIPE_WEBHOOK_SECRET", "")
    return [s.strip() for s in raw.split(",") if s.strip()]


def _reachable(base: str) -> None:
    try:
        response = httpx.get(base + routes.HEALTH_LIVE, timeout=5)
    except httpx.HTTPError as exc:
        raise GateError(f"cannot reach {base}: {type(exc).__name__}") from None
    if response.status_code != 200:
        raise GateError(f"{base}{routes.HEALTH_LIVE} answered {response.status_code}")


def wait_ready(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise GateError(f"the service exited at start:\n{log.read_text(errors='replace')}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(base + routes.HEALTH_READY, timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise GateError("the service did not become ready within 30 s")


class ServiceProcess:
    """The reference service as a process a rehearsal may kill -9 and start again
    on the same SQLite file and port (``scenarios.crash``).

    ``argv`` is the program before ``serve ...`` (default: this Python's
    ``-m licensing_service``); a test passes a stand-in that takes the same
    ``serve --test-clock --port P --db FILE`` arguments."""

    def __init__(
        self,
        db: Path | str,
        log: Path,
        *,
        secret: str | None = None,
        port: int | None = None,
        argv: Sequence[str] | None = None,
        pin: bool = False,
        env: Mapping[str, str] | None = None,
        test_clock: bool = True,
        core: int = 0,
        cwd: Path | None = None,
    ) -> None:
        self.db = db
        # Its working directory: where a PostgreSQL service keeps its test-clock
        # file (var/ under it), so a rehearsal's replicas share one of their own.
        self.cwd = cwd  # a SQLite file, or a database URL (several replicas on one)
        self.test_clock = test_clock
        self.core = core
        self.log = log
        self.secret = secret or "whsec_rehearsal_" + secrets_module.token_hex(16)
        self.port = port or free_port()
        self.argv = list(argv or [sys.executable, "-m", "licensing_service"])
        self.pin = pin
        self.env = dict(env or {})  # added to its environment at every start
        self.starts = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def secrets(self) -> list[str]:
        return [self.secret]

    def start(self) -> ServiceProcess:
        if self._process is not None and self._process.poll() is None:
            raise GateError("the service is already running")
        env = {
            **os.environ,
            "STRIPE_WEBHOOK_SECRET": self.secret,
            "LH_ENVIRONMENT": "test",
            "LH_LOG_LEVEL": "warning",
            **self.env,
        }
        clock = ["--test-clock"] if self.test_clock else []
        cmd = [*self.argv, "serve", *clock, "--port", str(self.port), "--db", str(self.db)]
        with self.log.open("ab") as log:  # appended: every life of the service in one file
            self._process = subprocess.Popen(
                pinned(cmd, self.core, self.pin),
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.cwd,
            )
        self.starts += 1
        wait_ready(self.url, self._process, self.log)
        return self

    def kill(self) -> None:
        """SIGKILL the process group: no shutdown, no flush, as a crash."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self) -> None:
        """SIGTERM its group and wait (SIGKILL past 15 s); a Ctrl-C meanwhile is
        held, so it cannot leave the process running in its own session."""
        if self._process is not None:
            with sigint_held():
                stop_group(self._process)

    @staticmethod
    def stop_all(services: Sequence[ServiceProcess]) -> None:
        """Stop several at once (SIGTERM to all, then wait): bounded by the slowest."""
        with sigint_held():
            stop_groups([s._process for s in services if s._process is not None])

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
