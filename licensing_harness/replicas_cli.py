"""``licensing-harness replicas``: the command in front of :mod:`scenarios.replicas`
(the replica set lives there, beside the proxy, so the storm can start one too).

Light at import (the standard library only), as every part's CLI module is:
the replica set, its proxy and httpx load when the command runs.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scenarios.replicas import ReplicaSet

WATCH_SECONDS = 0.5  # how often a dead replica is looked for


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = sub.add_parser(
        "replicas", help="N service replicas on one database behind one address (127.0.0.1)"
    )
    cmd.add_argument(
        "--db", required=True, help="a SQLite file or a postgresql:// URL, shared by all"
    )
    cmd.add_argument("--replicas", type=_count, default=3, help="how many (default 3)")
    cmd.add_argument("--port", type=int, default=8787, help="the one address's port")
    cmd.add_argument("--test-clock", action="store_true", help="serve --test-clock on each")
    cmd.add_argument(
        "--duration", type=float, help="stop after this many seconds (default: Ctrl-C)"
    )
    cmd.add_argument("--work", type=Path, help="where the replicas' logs go (default: temp)")
    cmd.add_argument("--pin", action="store_true", help="replicas on core 0 (taskset)")
    cmd.set_defaults(run=_run)


def _count(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 32:
        raise argparse.ArgumentTypeError("must be between 1 and 32")
    return value


class _Stopped(Exception):
    """SIGTERM: stop the replicas as Ctrl-C does."""


def _on_term(signum: int, frame: FrameType | None) -> None:
    del signum, frame
    raise _Stopped


def _run(args: argparse.Namespace) -> int:
    from loadtests.harness.errors import GateError
    from scenarios.proxy import ProxyError
    from scenarios.replicas import ReplicaSet, describe_db

    work = args.work or Path(tempfile.mkdtemp(prefix="lh-replicas-"))
    db: Path | str = args.db if "://" in args.db else Path(args.db)
    replicas = ReplicaSet(
        db,
        args.replicas,
        work,
        port=args.port,
        test_clock=args.test_clock,
        secret=os.environ.get("STRIPE_WEBHOOK_SECRET"),
        pin=args.pin,
    )
    previous = signal.signal(signal.SIGTERM, _on_term)
    print(f"replicas: starting {args.replicas} on {describe_db(db)} ...", file=sys.stderr)
    code = 0
    try:
        replicas.start()
        print(replicas.status(), flush=True)
        if "STRIPE_WEBHOOK_SECRET" not in os.environ:
            print(
                "replicas: no STRIPE_WEBHOOK_SECRET: webhooks are verified with a generated"
                " secret (set it to sign for them)",
                file=sys.stderr,
            )
        code = _watch(replicas, args.duration)
    except (GateError, ProxyError) as exc:
        print(f"replicas: could not start: {exc}", file=sys.stderr)
        code = 2
    except (KeyboardInterrupt, _Stopped):
        print("replicas: stopping", file=sys.stderr)
    finally:
        replicas.stop()
        signal.signal(signal.SIGTERM, previous)
    if replicas.proxy is not None:
        print(f"replicas: stopped; connections per replica {replicas.proxy.spread()}")
    return code


def _watch(replicas: ReplicaSet, duration: float | None) -> int:
    """Until the duration ends (0) or every replica has died (1); each death reported."""
    deadline = None if duration is None else time.monotonic() + duration
    reported: set[int] = set()
    while deadline is None or time.monotonic() < deadline:
        for index in set(replicas.dead()) - reported:
            port = replicas.processes[index].port
            print(f"replicas: replica {index} (:{port}) exited; the others go on", file=sys.stderr)
            reported.add(index)
        if len(reported) == len(replicas.processes):
            print("replicas: every replica has exited", file=sys.stderr)
            return 1
        time.sleep(WATCH_SECONDS)
    return 0
