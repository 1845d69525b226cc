"""``python -m scenarios.storm_cli storm|crash``: the storm and the crash-restart
storm from a shell, against a reference service this command starts (a fresh
SQLite file under ``--work``, ``--test-clock``), for the figures in
docs/rehearsal-faults.md. The rehearsal runner (``licensing-harness rehearse``)
calls the same functions.

Prints progress (a live line on a terminal; without one, a plain line every few
seconds), then the result as JSON, and exits 0 when every judge passed, 1 if not.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from loadtests.harness.service_process import ServiceProcess
from loadtests.harness.steal import cpu_times, steal_pct
from scenarios.crash import run_crash_restart
from scenarios.storm import StormConfig, StormProgress, StormResult, run_storm

PLAIN_EVERY_SECONDS = 5.0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scenarios.storm_cli")
    parser.add_argument("kind", choices=["storm", "crash"])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--kills", type=int, default=5, help="crash only")
    parser.add_argument(
        "--outage-seconds", type=float, help="test-clock seconds of 5xx (storm: 120, crash: 0)"
    )
    parser.add_argument("--outage", choices=["webhook", "db"], default="webhook")
    parser.add_argument("--work", type=Path, help="where the database and log go (default: temp)")
    args = parser.parse_args(argv)
    outage = args.outage_seconds
    if outage is None:
        outage = 120.0 if args.kind == "storm" else 0.0
    config = StormConfig(
        events=args.events, seed=args.seed, outage_seconds=outage, outage=args.outage
    )
    work = args.work or Path(tempfile.mkdtemp(prefix=f"lh-{args.kind}-"))
    work.mkdir(parents=True, exist_ok=True)
    before = cpu_times()
    with ServiceProcess(work / "licensing.db", work / "service.log", pin=True) as service:
        show = _progress(sys.stderr.isatty())
        if args.kind == "storm":
            result = run_storm(service.url, service.secrets, config, db=service.db, progress=show)
        else:
            result = run_crash_restart(service, config, kills=args.kills, progress=show)
    print(file=sys.stderr)
    print(json.dumps(_report(result, steal_pct(before, cpu_times()), work), indent=2))
    return 0 if result.passed else 1


def _report(result: StormResult, steal: float | None, work: Path) -> dict[str, object]:
    out = result.summary()
    out["cpu_steal_pct"] = None if steal is None else round(steal, 2)
    out["work"] = str(work)
    return out


def _progress(tty: bool) -> Callable[[StormProgress], None]:
    last = [0.0]

    def show(p: StormProgress) -> None:
        if tty:
            print("\r" + p.line(), end="", file=sys.stderr, flush=True)
            return
        now = time.monotonic()
        if now - last[0] >= PLAIN_EVERY_SECONDS or p.pending == 0:
            last[0] = now
            print(p.line(), file=sys.stderr, flush=True)

    return show


if __name__ == "__main__":
    sys.exit(main())
