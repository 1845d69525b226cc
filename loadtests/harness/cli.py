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
    gate.add_argument("--credentials", type=Path, help="licenses to drive on --target (JSON lines)")
    gate.add_argument(
        "--webhook-secret",
        action="append",
        default=[],
        help="the target's webhook secret (default $STRIPE_WEBHOOK_SECRET)",
    )
    gate.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    gate.set_defaults(run=_gate)


def _gate(args: argparse.Namespace) -> int:
    from loadtests.harness.gate import GateOptions, main

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
            users=args.users,
            credentials=args.credentials,
            webhook_secrets=tuple(args.webhook_secret),
            pin=not args.no_pin,
        )
    )


def _loopback(url: str) -> bool:
    from urllib.parse import urlsplit

    from fixtures.target import is_loopback

    host = urlsplit(url).hostname
    return host is not None and is_loopback(host)
