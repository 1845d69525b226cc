"""What the callgrind benchmarks share (``callgrind_validate.py``,
``callgrind_webhooks.py``): one ``serve`` process under ``valgrind
--tool=callgrind``, a warm-up, the counters zeroed, the measured requests,
the counters dumped and their total read; and the keep-alive client's
reading of one answer."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from common import CLI, stop, wait_ready


@dataclass(frozen=True, slots=True)
class Counted:
    ok: int  # what ``measure`` returned: requests answered 200
    seconds: float  # wall time of the measured part, under callgrind
    instructions: int  # every thread's, from the counters' zeroing to their dump


def under_callgrind(
    work: Path,
    db: Path,
    port: int,
    warm_up: Callable[[], object],
    measure: Callable[[], int],
    env: dict[str, str] | None = None,
) -> Counted:
    """``serve --db db --port port`` under callgrind (dumps in ``work``): ``warm_up()``,
    counters zeroed, ``measure()``, counters dumped and totalled."""
    out = work / "callgrind.out"
    proc = subprocess.Popen(
        [
            *("valgrind", "--tool=callgrind", f"--callgrind-out-file={out}.%p"),
            *(CLI, "serve", "--db", str(db), "--port", str(port)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env=env,
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}/health/live", timeout=300)
        warm_up()
        subprocess.run(["callgrind_control", "-z", str(proc.pid)], check=True, timeout=60)
        started = time.monotonic()
        ok = measure()
        elapsed = time.monotonic() - started
        subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True, timeout=60)
        time.sleep(2)
        dumps = sorted(work.glob("callgrind.out.*.*"), key=lambda p: p.stat().st_mtime)
        if not dumps:
            raise SystemExit("callgrind wrote no dump")
        return Counted(ok, elapsed, total_instructions(dumps[-1]))
    finally:
        stop(proc)


def total_instructions(dump: Path) -> int:
    match = re.search(r"^(?:summary|totals): (\d+)", dump.read_text(), re.MULTILINE)
    if match is None:
        raise SystemExit(f"no totals in {dump}")
    return int(match.group(1))


async def answered_200(reader: asyncio.StreamReader, each_read_seconds: float) -> bool:
    """Read one whole answer (head and Content-Length body); was it a 200?"""
    wait = each_read_seconds
    status = await asyncio.wait_for(reader.readline(), wait)
    length = 0
    while (line := await asyncio.wait_for(reader.readline(), wait)) not in (b"\r\n", b""):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await asyncio.wait_for(reader.readexactly(length), wait)
    return status.split(b" ", 2)[1] == b"200"
