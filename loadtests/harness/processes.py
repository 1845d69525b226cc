"""Child processes the gate and the benchmarks start: a port, a core, and a clean stop."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator


def free_port() -> int:
    """A port nothing listens on right now, on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_group(process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """SIGTERM the process's group (it was started with ``start_new_session``, so
    its own children go too), then SIGKILL if it has not ended within ``timeout``."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


def stop_groups(processes: list[subprocess.Popen[bytes]], timeout: float = 15.0) -> None:
    """:func:`stop_group` for several at once: every group is sent SIGTERM first,
    then each is waited for (SIGKILL past ``timeout`` in all), so N processes
    take the longest one's shutdown, not the sum."""
    running = [p for p in processes if p.poll() is None]
    for process in running:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    for process in running:
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


@contextlib.contextmanager
def sigint_held() -> Iterator[None]:
    """SIGINT ignored inside, so a second Ctrl-C cannot cut a clean-up short
    (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def pin_self(pin: bool) -> None:
    """The gate's checks run in this process: keep them off the service's core."""
    if pin and (os.cpu_count() or 1) >= 2 and hasattr(os, "sched_setaffinity"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {1})


def pinned(cmd: list[str], core: int, pin: bool) -> list[str]:
    """Service on core 0, load on core 1, when there are two cores and taskset."""
    if pin and (os.cpu_count() or 1) >= 2 and shutil.which("taskset"):
        return ["taskset", "-c", str(core), *cmd]
    return cmd
