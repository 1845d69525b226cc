"""Hostile input against a licensing service: the steps a rehearsal can run.

Small and synchronous; each function takes a target URL on 127.0.0.1, is
bounded in time, and returns counts to judge:

- ``run_schemathesis(url, examples=...)``: every route of the target's
  ``/openapi.json`` fuzzed by schemathesis (no 5xx, every response as the
  spec says), the fault-injecting harness routes excluded;
- ``fuzz_webhooks(url, secret, requests=...)``: forged, malformed, stale and
  oversized deliveries to ``/webhook``; compare ``licensing_state(db)`` before
  and after with ``changed_tables``: a refused delivery changes nothing;
- ``hold_hostile_connections(url, count=..., seconds=...)``: slow-drip,
  half-open and oversized connections kept open;
- ``reference_service(work, ...)``: the reference service to run them on.

``python -m scenarios.hostile connections --url URL --count N --seconds T``
holds the connections from a process of their own (``benchmarks/slow_clients.py``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from scenarios.hostile_clients import PARTS, HostileResult, hold_hostile_connections
from scenarios.hostile_counts import changed_tables, licensing_state, status_counts
from scenarios.hostile_schema import FAULT_ROUTES, SchemaRun, run_schemathesis
from scenarios.hostile_service import Service, reference_service
from scenarios.hostile_webhooks import FuzzResult, fuzz_webhooks, webhook_cases

__all__ = [
    "FAULT_ROUTES",
    "PARTS",
    "FuzzResult",
    "HostileResult",
    "SchemaRun",
    "Service",
    "changed_tables",
    "fuzz_webhooks",
    "hold_hostile_connections",
    "licensing_state",
    "main",
    "reference_service",
    "run_schemathesis",
    "status_counts",
    "webhook_cases",
]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scenarios.hostile")
    sub = parser.add_subparsers(dest="command", required=True)
    hold = sub.add_parser("connections", help="hold hostile connections open against a target")
    hold.add_argument("--url", required=True)
    hold.add_argument("--count", type=int, default=200)
    hold.add_argument("--seconds", type=float, default=30)
    hold.add_argument("--parts", default=",".join(PARTS), help=f"some of {','.join(PARTS)}")
    args = parser.parse_args(argv)

    def say(line: str) -> None:
        print(line, flush=True)

    result = hold_hostile_connections(
        args.url,
        count=args.count,
        seconds=args.seconds,
        parts=[p for p in args.parts.split(",") if p],
        progress=say,
    )
    say(result.line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
