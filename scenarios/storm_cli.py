"""``python -m scenarios.storm_cli storm|crash``: the storm and the crash-restart
storm from a shell, against a reference service this command starts (a fresh
SQLite file under ``--work``, ``--test-clock``), for the figures in
docs/rehearsal-faults.md. The rehearsal runner (``licensing-harness rehearse``)
calls the same functions.

Prints progress (``fixtures.progress``: a live bar on a terminal; without one, a
plain line every few seconds), then the result as JSON, and exits 0 when every
judge passed, 1 if not.

Ctrl-C (SIGINT) or SIGTERM stops the storm and every service process it started
(each runs in a session of its own, which no terminal signal reaches, so this
command stops them; a second Ctrl-C meanwhile is held until they are) and exits
130 with one line, no traceback.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from fixtures.progress import Progress
from loadtests.harness.service_process import ServiceProcess
from loadtests.harness.steal import cpu_times, steal_pct
from scenarios.crash import run_crash_restart
from scenarios.storm import StormConfig, StormProgress, StormResult, run_storm

INTERRUPTED = 130  # as a shell reports a command ended by SIGINT


def main(argv: Sequence[str] | None = None) -> int:
    previous = signal.signal(signal.SIGTERM, _terminated)
    # SIGTERM is routed through SIGINT, which a shell's background job (`cmd &`
    # in a script, a CI step) starts with ignored: there it would stop nothing.
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return _main(argv)
    except KeyboardInterrupt:
        # The `with` blocks below have stopped the service processes by now.
        print("storm: interrupted; the service processes are stopped", file=sys.stderr)
        return INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)


def _terminated(signum: int, frame: FrameType | None) -> None:
    """SIGTERM: as Ctrl-C (the same path: asyncio's own SIGINT handler while the
    storm's loop runs), so the service processes are stopped, not orphaned."""
    del signum, frame
    signal.raise_signal(signal.SIGINT)


def _main(argv: Sequence[str] | None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scenarios.storm_cli")
    parser.add_argument("kind", choices=["storm", "crash"])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--duplicates", type=float, default=0.3, help="share delivered twice")
    parser.add_argument("--kills", type=int, default=5, help="crash only")
    parser.add_argument(
        "--outage-seconds", type=float, help="test-clock seconds of 5xx (storm: 120, crash: 0)"
    )
    parser.add_argument("--outage", choices=["webhook", "db"], default="webhook")
    parser.add_argument("--work", type=Path, help="where the database and log go (default: temp)")
    parser.add_argument(
        "--replicas", type=int, default=1, help="storm only: spread over N replicas on one database"
    )
    parser.add_argument(
        "--db", help="storm only: a postgresql:// URL for the replicas (default: SQLite in --work)"
    )
    args = parser.parse_args(argv)
    outage = args.outage_seconds
    if outage is None:
        outage = 120.0 if args.kind == "storm" else 0.0
    config = StormConfig(
        events=args.events,
        seed=args.seed,
        outage_seconds=outage,
        outage=args.outage,
        duplicate_rate=args.duplicates,
    )
    work = args.work or Path(tempfile.mkdtemp(prefix=f"lh-{args.kind}-"))
    work.mkdir(parents=True, exist_ok=True)
    before = cpu_times()
    if args.kind == "storm" and (args.replicas > 1 or args.db):
        return _replicated(args, config, work, before)
    with ServiceProcess(work / "licensing.db", work / "service.log", pin=True) as service:
        show = _Shown(args.kind)
        try:
            if args.kind == "storm":
                result = run_storm(
                    service.url, service.secrets, config, db=service.db, progress=show
                )
            else:
                result = run_crash_restart(service, config, kills=args.kills, progress=show)
        finally:
            show.close()
    print(json.dumps(_report(result, steal_pct(before, cpu_times()), work), indent=2))
    return 0 if result.passed else 1


def _replicated(args: argparse.Namespace, config: StormConfig, work: Path, before: object) -> int:
    """The storm over ``--replicas`` processes on one database: each attempt of a
    delivery on the replica after its previous attempt's."""
    from scenarios.replicas import ReplicaSet

    db: Path | str = args.db or work / "licensing.db"
    with ReplicaSet(db, args.replicas, work, test_clock=True, pin=True) as replicas:
        show = _Shown(f"storm over {args.replicas} replicas")
        try:
            result = run_storm(
                replicas.urls[0],
                replicas.secrets,
                config,
                db=db,
                progress=show,
                replicas=replicas.urls[1:],
            )
        finally:
            show.close()
    report = _report(result, steal_pct(before, cpu_times()), work)  # type: ignore[arg-type]
    report["replicas"] = args.replicas
    print(json.dumps(report, indent=2))
    return 0 if result.passed else 1


def _report(result: StormResult, steal: float | None, work: Path) -> dict[str, object]:
    out = result.summary()
    out["cpu_steal_pct"] = None if steal is None else round(steal, 2)
    out["work"] = str(work)
    return out


class _Shown:
    """The storm's progress through ``fixtures.progress`` (a live bar on a
    terminal, a plain line every few seconds elsewhere), made at the first
    report, when the number of deliveries is known."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.bar: Progress | None = None

    def __call__(self, p: StormProgress) -> None:
        if self.bar is None:
            self.bar = Progress(self.label, p.deliveries, unit="deliveries acknowledged")
        outage = ", OUTAGE" if p.outage else ""
        kills = f", {p.kills} kills" if p.kills else ""
        note = f"clock t+{p.clock_seconds:.0f} s, {p.attempts} attempts{outage}{kills}"
        self.bar.update(p.acknowledged, note)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


if __name__ == "__main__":
    sys.exit(main())
