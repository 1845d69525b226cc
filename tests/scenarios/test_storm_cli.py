"""``python -m scenarios.storm_cli``: starts the service, shows progress without
carriage returns off a terminal, prints the result as JSON, exits 0 on a pass;
the first SIGINT or SIGTERM stops it and every replica it started."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scenarios.storm_cli import main

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
STORM = [sys.executable, "-m", "scenarios.storm_cli", "storm"]


@pytest.mark.parametrize("kind", ["storm", "crash"])
def test_a_small_run_passes_and_reports(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    args = [kind, "--events", "60", "--kills", "1", "--outage-seconds", "30"]
    assert main([*args, "--work", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert result["passed"] and result["lost"] == result["applied_twice"] == 0
    assert result["kills"] == (1 if kind == "crash" else 0)
    assert result["outage_windows"] == [[120.0, 150.0]]
    assert isinstance(result["cpu_steal_pct"], float)
    assert (tmp_path / "licensing.db").exists()
    assert "deliveries acknowledged" in err and "\r" not in err


@pytest.mark.parametrize(
    ("signum", "sigint_at_start"),
    [
        (signal.SIGINT, signal.SIG_DFL),  # Ctrl-C in a terminal
        (signal.SIGTERM, signal.SIG_DFL),
        # A shell's background job (`cmd &` in a script, CI) starts with SIGINT
        # ignored: SIGTERM must stop it all the same (it did not).
        (signal.SIGTERM, signal.SIG_IGN),
    ],
)
def test_the_first_signal_stops_the_storm_and_its_replicas(
    signum: int, sigint_at_start: signal.Handlers, tmp_path: Path
) -> None:
    # A real process stopped mid-storm: its replicas run in sessions of their
    # own, so only it can stop them.
    process = subprocess.Popen(
        [*STORM, "--events", "20000", "--replicas", "2", "--work", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, sigint_at_start),
    )
    try:
        assert process.stderr is not None
        seen = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the storm under way: replicas up, deliveries out
            line = process.stderr.readline()
            seen.append(line)
            if "deliveries acknowledged" in line or not line:
                break
        assert "deliveries acknowledged" in seen[-1], "".join(seen)
        replicas = _children(process.pid)
        assert len(replicas) == 2
        process.send_signal(signum)
        rest = process.communicate(timeout=30)[1]  # bounded: one stop, not two
        assert process.returncode == 130, rest
        assert "storm: interrupted; the service processes are stopped" in rest
        assert "Traceback" not in rest
        assert [pid for pid in replicas if _running(pid)] == []
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:  # the parent's pid
                    found.append(int(entry.name))
    return found


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
