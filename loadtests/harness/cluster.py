"""The gate's load from Locust's master and workers: local worker processes, workers on
other machines, the bounded wait for them, and the ``--worker`` command.

``--workers N`` starts a master and N worker processes here (all on the load's core when
pinned); ``--master`` makes the master listen for workers started elsewhere with
``licensing-harness gate --worker --master-host H``, and ``--expect-workers K`` is how
many it waits for (local ones included) before the load starts. Every worker gets its
share of the inputs from the master (:mod:`.workers`); provisioning, the checks, the
judgement and the report stay in the gate's own process, on the master's machine.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from fixtures.progress import Progress
from loadtests.harness.errors import GateError
from loadtests.harness.model import WorkerRoll
from loadtests.harness.processes import free_port, pinned, stop_group
from loadtests.harness.workers import MASTER_ONLY, SETTINGS, STATUS_ENV, read_roll

LOCUST_PORT = 5557  # Locust's own default, for workers on other machines to find
STARTED = ("spawning", "running")  # the master's states once the load has begun
POLL_S = 0.25


@dataclass(frozen=True, slots=True)
class Distribution:
    """How the load is spread: by default not at all (one Locust process)."""

    local_workers: int = 0  # --workers N: worker processes on this machine
    master: bool = False  # --master: workers from other machines may connect
    expect_workers: int | None = None  # --expect-workers K (default: the local ones)
    wait_s: float = 60.0  # --expect-workers-wait: how long to wait for them
    bind_host: str = "127.0.0.1"  # --master-bind-host; 0.0.0.0 to hear other machines
    port: int | None = None  # --master-port (default: 5557 with --master, else a free one)

    @property
    def distributed(self) -> bool:
        return self.master or self.local_workers > 0

    @property
    def expected(self) -> int:
        return self.expect_workers if self.expect_workers is not None else self.local_workers

    def problems(self) -> list[tuple[str, str]]:
        """(option, what is wrong) for each inconsistency; empty when usable."""
        found = []
        if self.local_workers < 0:
            found.append(("--workers", f"must be at least 1, not {self.local_workers}"))
        if self.expect_workers is not None and not self.master:
            found.append(("--expect-workers", "needs --master (other machines' workers)"))
        if self.master and self.expected < 1:
            found.append(("--expect-workers", "--master needs at least one worker to wait for"))
        if self.expected < self.local_workers:
            fewer = f"{self.expected} is fewer than --workers {self.local_workers}"
            found.append(("--expect-workers", fewer))
        if self.wait_s <= 0:
            found.append(("--expect-workers-wait", "must be more than 0 s"))
        return found


class Cluster:
    """A running master and its local workers; ``stop`` ends whatever still runs."""

    def __init__(
        self,
        master: subprocess.Popen[bytes],
        workers: list[subprocess.Popen[bytes]],
        status: Path,
        distribution: Distribution,
        port: int,
        logs: Path,
    ) -> None:
        self.master = master
        self.workers = workers
        self.status = status
        self.distribution = distribution
        self.port = port
        self.logs = logs

    def roll(self) -> WorkerRoll | None:
        return read_roll(self.status)

    def note(self) -> str:
        roll = self.roll()
        connected = roll.connected if roll is not None else 0
        return f"{connected}/{self.distribution.expected} workers"

    def wait_connected(
        self,
        out: TextIO,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        wait_for_workers(
            self.roll,
            self._exited,
            expected=self.distribution.expected,
            wait_s=self.distribution.wait_s,
            address=f"{self.distribution.bind_host}:{self.port}",
            out=out,
            clock=clock,
            sleep=sleep,
        )

    def _exited(self) -> str | None:
        if self.master.poll() is not None:
            return f"the Locust master exited (code {self.master.returncode}); see {self.logs}"
        for n, worker in enumerate(self.workers, 1):
            if worker.poll() is not None:
                return (
                    f"local worker {n} exited (code {worker.returncode}); "
                    f"see {self.logs.with_name(f'locust-worker-{n}.log')}"
                )
        return None

    def finish(self, timeout: float = 30.0) -> WorkerRoll | None:
        """The master has ended: its workers end with it (it sends them quit). Its last
        roll, written at its exit."""
        deadline = time.monotonic() + timeout
        for worker in self.workers:
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.wait(timeout=max(deadline - time.monotonic(), 0.1))
        self.stop()
        return self.roll()

    def stop(self) -> None:
        for process in [self.master, *self.workers]:
            stop_group(process)


def wait_for_workers(
    roll: Callable[[], WorkerRoll | None],
    exited: Callable[[], str | None],
    *,
    expected: int,
    wait_s: float,
    address: str,
    out: TextIO,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Until the master has started the load (it does once ``expected`` workers are
    ready), at most ``wait_s``; a progress line shows who is connected."""
    started = clock()
    with Progress("workers", expected, unit="connected", stream=out, clock=clock) as progress:
        while True:
            now = roll()
            connected = now.connected if now is not None else 0
            progress.update(connected, f"master on {address}")
            if now is not None and now.state in STARTED:
                return
            problem = exited()
            if problem is not None:
                raise GateError(f"before the load started, {problem}")
            waited = clock() - started
            if waited >= wait_s:
                raise GateError(
                    f"{connected} of {expected} Locust workers connected to the master on "
                    f"{address} within {wait_s:g} s; start the missing ones with "
                    f"`licensing-harness gate --worker --master-host <this machine> "
                    f"--master-port {address.rpartition(':')[2]}`, or wait longer "
                    f"(--expect-workers-wait)"
                )
            sleep(min(POLL_S, wait_s - waited))


def master_args(distribution: Distribution, port: int) -> list[str]:
    """Locust's own options for the master (its own bound on the wait is a backstop:
    the gate gives up first, with the clearer message)."""
    return [
        "--master",
        "--master-bind-host",
        distribution.bind_host,
        "--master-bind-port",
        str(port),
        "--expect-workers",
        str(distribution.expected),
        "--expect-workers-max-wait",
        str(int(distribution.wait_s) + 30),
    ]


def worker_env(env: Mapping[str, str]) -> dict[str, str]:
    """A local worker's environment: without the master's files, secrets and settings,
    so that it runs on its share as a worker on another machine does."""
    return {k: v for k, v in env.items() if k not in MASTER_ONLY and k not in SETTINGS}


@contextlib.contextmanager
def start_cluster(
    master_cmd: Callable[[list[str]], list[str]],
    locustfile: Path,
    env: Mapping[str, str],
    report_dir: Path,
    distribution: Distribution,
    *,
    pin: bool,
) -> Iterator[Cluster]:
    """The master (``master_cmd`` given its distribution options) and the local workers,
    logs in ``report_dir``; stopped on the way out, whatever happened."""
    port = distribution.port or (LOCUST_PORT if distribution.master else free_port())
    status = report_dir / "workers.json"
    status.unlink(missing_ok=True)
    logs = report_dir / "locust.log"
    with logs.open("wb") as log:
        master = subprocess.Popen(
            pinned(master_cmd(master_args(distribution, port)), 1, pin),
            env={**env, STATUS_ENV: str(status)},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    workers: list[subprocess.Popen[bytes]] = []
    running = Cluster(master, workers, status, distribution, port, logs)
    try:
        for n in range(1, distribution.local_workers + 1):
            cmd = [sys.executable, "-m", "locust", "-f", str(locustfile), "--worker"]
            cmd += ["--master-host", "127.0.0.1", "--master-port", str(port)]
            cmd += ["--loglevel", "WARNING"]
            with (report_dir / f"locust-worker-{n}.log").open("wb") as log:
                workers.append(
                    subprocess.Popen(
                        pinned(cmd, 1, pin),
                        env=worker_env(env),
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        yield running
    finally:
        running.stop()


def run_worker(master_host: str, master_port: int, out: TextIO) -> int:
    """``licensing-harness gate --worker``: one Locust worker for a master elsewhere.

    It takes everything from the master: the workload file (Locust's ``-f -``), the
    target, its share of the licenses and of the webhook stream, the settings. It needs
    only this project installed, the same version as the master's. Exit 0 when the
    master's run ended normally, 2 otherwise (the gate's "could not judge")."""
    where = f"{master_host}:{master_port}"
    print(f"worker: connecting to the master on {where} (for up to 5 min)", file=out, flush=True)
    cmd = [sys.executable, "-m", "locust", "-f", "-", "--worker"]
    cmd += ["--master-host", master_host, "--master-port", str(master_port), "--loglevel", "INFO"]
    # Its output is Locust's own log lines (connected, its share, the master's quit).
    process = subprocess.Popen(cmd, env=worker_env(os.environ))
    try:
        code = process.wait()
    except KeyboardInterrupt:
        process.terminate()
        code = process.wait(timeout=15)
    print(f"worker: done (Locust exit {code})", file=out, flush=True)
    return 0 if code == 0 else 2
