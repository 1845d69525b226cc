"""``licensing-harness gate``: the project's main job."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    gate = sub.add_parser(
        "gate",
        help="load + live checks + thresholds: exit 0 pass, 1 fail, 2 harness error",
        description=(
            "Run the release gate. Without --target it starts the reference service "
            "(temporary SQLite, --test-clock) itself."
        ),
    )
    gate.add_argument("--target", help="an external deployment's base URL (default: start one)")
    gate.add_argument("--config", type=Path, help="gate.toml (default: the packaged one)")
    gate.add_argument(
        "--report", type=Path, default=Path("var/gate"), help="report folder (default var/gate)"
    )
    gate.add_argument("--duration", help="override [load].duration, e.g. 30s")
    gate.add_argument("--users", type=int, help="override [load].users")
    gate.add_argument(
        "--propagation",
        metavar="DURATION",
        help="override [checks].propagation: how long a change may take to show on every"
        " replica, e.g. 100ms (default 0ms: exact, one process)",
    )
    gate.add_argument("--credentials", type=Path, help="licenses to drive on --target (JSON lines)")
    gate.add_argument(
        "--webhook-secret",
        action="append",
        default=[],
        help="the target's webhook secret (default $STRIPE_WEBHOOK_SECRET)",
    )
    gate.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    spread = gate.add_argument_group(
        "distributed load (Locust master and workers; see README, Distributed gate)"
    )
    spread.add_argument(
        "--workers", type=int, default=0, metavar="N", help="a master and N worker processes here"
    )
    spread.add_argument(
        "--master", action="store_true", help="also let workers from other machines connect"
    )
    spread.add_argument(
        "--expect-workers",
        type=int,
        metavar="K",
        help="with --master: start the load once K workers (local ones included) connected",
    )
    spread.add_argument(
        "--expect-workers-wait",
        default="60s",
        metavar="DURATION",
        help="give up (exit 2) if they have not all connected by then (default 60s)",
    )
    spread.add_argument(
        "--master-bind-host",
        default="127.0.0.1",
        help="the master's address for workers (default 127.0.0.1; 0.0.0.0 for other machines)",
    )
    spread.add_argument(
        "--master-port",
        type=int,
        help="the master's port (default 5557 with --master or --worker, else a free one)",
    )
    spread.add_argument(
        "--worker",
        action="store_true",
        help="be one worker of a master elsewhere: everything else comes from the master",
    )
    spread.add_argument("--master-host", help="with --worker: the master's host")
    gate.set_defaults(run=_gate)


def _gate(args: argparse.Namespace) -> int:
    import sys

    from loadtests.harness.cluster import LOCUST_PORT, Distribution, run_worker
    from loadtests.harness.errors import ConfigError
    from loadtests.harness.gate import GateOptions, main
    from loadtests.harness.gate_config import parse_duration

    if args.worker:
        if args.master_host is None or args.master or args.workers:
            print("gate: --worker needs --master-host H, and no --master or --workers")
            return 2
        return run_worker(args.master_host, args.master_port or LOCUST_PORT, sys.stdout)
    if args.master_host is not None:
        print("gate: --master-host is for --worker (a master listens: --master-bind-host)")
        return 2
    try:
        wait_s = parse_duration(args.expect_workers_wait, "--expect-workers-wait")
    except ConfigError as exc:
        print(f"gate: {exc}")
        return 2
    if (
        args.target is not None
        and not _loopback(args.target)
        and not os.environ.get("LH_GATE_ALLOW_REMOTE")
    ):
        # Load is aimed where the user says; we only make it explicit.
        print("gate: --target is not a loopback address; set LH_GATE_ALLOW_REMOTE=1 to go on")
        return 2
    return main(
        GateOptions(
            target=args.target,
            config=args.config,
            report_dir=args.report,
            duration=args.duration,
            propagation=args.propagation,
            users=args.users,
            credentials=args.credentials,
            webhook_secrets=tuple(args.webhook_secret),
            pin=not args.no_pin,
            distribution=Distribution(
                local_workers=args.workers,
                master=args.master,
                expect_workers=args.expect_workers,
                wait_s=wait_s,
                bind_host=args.master_bind_host,
                port=args.master_port,
            ),
        )
    )


def _loopback(url: str) -> bool:
    from urllib.parse import urlsplit

    from fixtures.target import is_loopback

    host = urlsplit(url).hostname
    return host is not None and is_loopback(host)
