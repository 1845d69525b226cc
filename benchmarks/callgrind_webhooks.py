"""Instructions per webhook delivery, counted by callgrind: the load-proof
figure for the burst of ``webhook_wrk.py`` (new ``checkout.session.completed``
events, pre-signed, 20% delivered twice), for comparing two versions of the
webhook path while the machine is too busy for wall-clock figures.

One ``serve`` process under ``valgrind --tool=callgrind`` (every thread counted:
the WAL checkpointer shares the core); a warm-up of other events; the counters
zeroed; the deliveries sent by 64 keep-alive connections, each waiting for its
answer (wrk's shape); the counters dumped; the total divided by the deliveries.

    .venv/bin/python benchmarks/callgrind_webhooks.py [--events 3000]

Traffic goes only to 127.0.0.1; every wait is bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
from pathlib import Path

from callgrind_run import answered_200, under_callgrind
from webhook_wrk import SECRET, deliveries

PORT = 8924


def request(header: str, payload: bytes) -> bytes:
    head = (
        f"POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Stripe-Signature: {header}\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


async def one_connection(queue: list[bytes]) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", PORT)
    ok = 0
    try:
        while queue:
            writer.write(queue.pop())
            ok += await answered_200(reader, 120)
    finally:
        writer.close()
    return ok


async def drive(items: list[tuple[str, bytes]], connections: int) -> int:
    queue = [request(h, b) for h, b in reversed(items)]  # popped from the end: file order
    counts = await asyncio.gather(*(one_connection(queue) for _ in range(connections)))
    return sum(counts)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    every = deliveries(args.warmup + args.events, 0.2, random.Random(5))  # noqa: S311
    # The warm-up's events are others than the measured ones (ids differ).
    cut = round(len(every) * args.warmup / (args.warmup + args.events))
    warm, measured = every[:cut], every[cut:]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = {**os.environ, "STRIPE_WEBHOOK_SECRET": SECRET, "LH_LOG_LEVEL": "warning"}
        counted = under_callgrind(
            work,
            work / "bench.db",
            PORT,
            lambda: asyncio.run(drive(warm, args.connections)),
            lambda: asyncio.run(drive(measured, args.connections)),
            env,
        )
    sent = len(measured)
    print(
        f"{sent} deliveries ({counted.ok} answered 200) in {counted.seconds:.1f} s under"
        f" callgrind: {counted.instructions / sent:,.0f} instructions a delivery"
    )
    return 0 if counted.ok == sent else 1


if __name__ == "__main__":
    sys.exit(main())
