"""Instructions per request of POST /validate-unified (operation validate,
active license), counted by callgrind: a figure that CPU steal and busy
neighbours cannot move, for comparing two versions of the hot path.

One ``serve`` process under ``valgrind --tool=callgrind``; a warm-up; the
counters zeroed (``callgrind_control -z``); a fixed number of requests from
a small keep-alive client (several connections, each request waiting for its
answer); the counters dumped (``callgrind_control -d``); the dumped total
divided by the requests.

    .venv/bin/python benchmarks/callgrind_validate.py [--requests 3000]

Traffic goes only to 127.0.0.1; every wait is bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from callgrind_run import answered_200, under_callgrind
from common import CLI

PORT = 8923
CONNECTIONS = 8


def body(email: str, token: str) -> bytes:
    return json.dumps(
        {
            "operation": "validate",
            "credentials": {"email": email, "token": token},
            "device": {"machineFingerprint": "bench-till", "skipMachineUpdate": True},
        }
    ).encode()


def request(payload: bytes) -> bytes:
    head = (
        f"POST /validate-unified HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


async def one_connection(payloads: list[bytes], count: int, offset: int) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", PORT)
    ok = 0
    try:
        for n in range(count):
            writer.write(request(payloads[(offset + n) % len(payloads)]))
            ok += await answered_200(reader, 60)
    finally:
        writer.close()
    return ok


async def drive(payloads: list[bytes], total: int) -> int:
    each = total // CONNECTIONS
    counts = await asyncio.gather(
        *(one_connection(payloads, each, i * each) for i in range(CONNECTIONS))
    )
    return sum(counts)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        db, creds = work / "bench.db", work / "creds.jsonl"
        subprocess.run(
            [CLI, "seed", "--db", db, "--customers", "500", "--out", creds, "--seed", "1"],
            check=True,
            capture_output=True,
        )
        rows = [json.loads(line) for line in creds.read_text().splitlines()]
        payloads = [body(r["email"], r["token"]) for r in rows]
        counted = under_callgrind(
            work,
            db,
            PORT,
            lambda: asyncio.run(drive(payloads, args.warmup)),
            lambda: asyncio.run(drive(payloads, args.requests)),
        )
    sent = (args.requests // CONNECTIONS) * CONNECTIONS
    print(
        f"{sent} requests ({counted.ok} answered 200) in {counted.seconds:.1f} s under"
        f" callgrind: {counted.instructions / sent:,.0f} instructions a request"
    )
    return 0 if counted.ok == sent else 1


if __name__ == "__main__":
    sys.exit(main())
