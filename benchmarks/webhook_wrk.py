"""Webhook ingestion as a burst: wrk posts pre-signed ``checkout.session.completed``
events, each a new customer, 20% of them delivered twice, at 64 connections.

This is the shape of a renewal day or a price change (every delivery independent,
as many in flight as the connections allow), unlike ``webhook_throughput.py``,
which sends a simulated year of customer lifecycles (mostly updates of existing
customers, ordered per customer) through our own sender at 32 in flight. Each run
starts a fresh service on an empty SQLite file pinned to core 0, wrk pinned to
core 1; afterwards the database must hold exactly one customer per distinct event
(none lost, none applied twice), or the run fails.

    .venv/bin/python benchmarks/webhook_wrk.py --runs 5
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from common import CLI, ROOT, cpu_times, start, stop, wait_ready

from fixtures.stripe import objects
from licensing_service.contract.stripe import signature_header

SECRET = "whsec_benchmark"  # noqa: S105 - a throwaway secret for a local run

# wrk sends the deliveries in file order, one per request, spread over its
# connections, and stops each thread when its share runs out.
LUA = r"""
local deliveries = {}
local next_index = 1
local first, step = 1, 1

function setup(thread)
  thread:set("id", #threads_seen + 1)
  table.insert(threads_seen, thread)
end
threads_seen = {}

function init(args)
  local path = args[1]
  for line in io.lines(path) do
    local tab = string.find(line, "\t", 1, true)
    deliveries[#deliveries + 1] = {string.sub(line, 1, tab - 1), string.sub(line, tab + 1)}
  end
  first, step = id, tonumber(args[2])
  next_index = first
end

function request()
  local d = deliveries[next_index]
  if d == nil then
    wrk.thread:stop()
    d = deliveries[1]
  end
  next_index = next_index + step
  return wrk.format("POST", "/webhook",
    {["Content-Type"] = "application/json", ["Stripe-Signature"] = d[1]}, d[2])
end

function done(summary, latency, requests)
  io.write(string.format("JSON {\"requests\": %d, \"seconds\": %.6f, \"non2xx\": %d, " ..
    "\"errors\": %d, \"p50\": %.3f, \"p90\": %.3f, \"p99\": %.3f, \"max\": %.3f}\n",
    summary.requests, summary.duration / 1e6, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000))
end
"""


@dataclass
class Run:
    events_per_s: float  # distinct events ingested per second
    deliveries_per_s: float  # requests per second, duplicates included
    requests: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    non_2xx: int
    socket_errors: int
    customers: int
    distinct_events: int
    steal_pct: float


def deliveries(events: int, duplicates: float, rng: random.Random) -> list[tuple[str, bytes]]:
    """``events`` new checkouts, each signed now; a ``duplicates`` share sent twice,
    the copy a few positions later (Stripe's redelivery of the same id and body)."""
    now = int(time.time())  # noqa: TID251 - signed for a real-clock server
    signed: list[tuple[str, bytes]] = []
    for n in range(events):
        session = objects.checkout_session(
            id=f"cs_bench{n:07d}",
            customer=f"cus_bench{n:07d}",
            subscription=f"sub_bench{n:07d}",
            email=f"burst{n:07d}@bench.example",
            name=f"Burst {n}",
            created=now,
        )
        event = objects.event(
            id=f"evt_bench{n:07d}",
            type="checkout.session.completed",
            created=now,
            data_object=session,
        )
        body = json.dumps(event, separators=(",", ":")).encode()
        signed.append((signature_header(body, SECRET, now), body))
    out = list(signed)
    for index in sorted(rng.sample(range(events), round(events * duplicates)), reverse=True):
        at = min(len(out), index + 1 + rng.randrange(64))
        out.insert(at, signed[index])
    return out


def write_lines(path: Path, items: list[tuple[str, bytes]]) -> None:
    with path.open("w", encoding="utf-8") as out:
        for header, body in items:
            out.write(f"{header}\t{body.decode()}\n")


def run_wrk(
    port: int, lines: Path, script: Path, connections: int, core: int, db: Path, events: int
) -> tuple[dict[str, float], float]:
    """wrk's latency figures, and the seconds from its start until the database
    held every distinct event. wrk itself always runs for its whole ``-d``: when
    every event is in, it is interrupted (SIGINT makes it report and exit)."""
    threads = 2
    started = time.monotonic()
    wrk = subprocess.Popen(
        [
            "taskset",
            "-c",
            str(core),
            "wrk",
            "-t",
            str(threads),
            "-c",
            str(connections),
            "-d",
            "300s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}",
            "--",
            str(lines),
            str(threads),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    elapsed = math.nan
    last, last_change = -1, started
    with sqlite3.connect(db) as conn:
        while time.monotonic() - started < 290:  # bounded, whatever the service does
            time.sleep(0.05)
            (seen,) = conn.execute("SELECT count(*) FROM webhook_events").fetchone()
            now = time.monotonic()
            if seen >= events:
                elapsed = now - started
                break
            if seen != last:
                last, last_change = seen, now
            elif now - last_change > 15:
                break  # stuck: report what wrk saw, the run then fails its count
    time.sleep(0.5)  # the last duplicates in flight
    wrk.send_signal(signal.SIGINT)
    stdout, stderr = wrk.communicate(timeout=30)
    found = re.search(r"^JSON (\{.*\})$", stdout, re.MULTILINE)
    if found is None:
        raise SystemExit(f"wrk failed ({wrk.returncode}):\n{stdout}\n{stderr}")
    result: dict[str, float] = json.loads(found[1])
    return result, elapsed


def counted(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT count(*) FROM customers").fetchone()
    return int(row[0])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--duplicates", type=float, default=0.2)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--max-steal", type=float, default=5.0, help="discard runs above this steal %%")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lh-webhook-wrk-"))
    script = work / "deliveries.lua"
    script.write_text(LUA)
    kept: list[Run] = []
    for n in range(args.runs):
        items = deliveries(args.events, args.duplicates, random.Random(n))  # noqa: S311
        lines = work / f"run{n}.tsv"
        write_lines(lines, items)
        port = 8990 + n
        env = {**os.environ, "STRIPE_WEBHOOK_SECRET": SECRET, "LH_LOG_LEVEL": "warning"}
        db = work / f"run{n}.db"
        server = start([str(CLI), "serve", "--port", str(port), "--db", str(db)], 0, env)
        try:
            wait_ready(f"http://127.0.0.1:{port}/health/ready")
            before = cpu_times()
            result, seconds = run_wrk(port, lines, script, args.connections, 1, db, args.events)
            after = cpu_times()
            time.sleep(0.5)  # the audit flusher's last group commit
        finally:
            stop(server)
        steal = 100 * (after[1] - before[1]) / max(1, after[0] - before[0])
        customers = counted(db)
        run = Run(
            events_per_s=round(args.events / seconds, 1),
            deliveries_per_s=round(result["requests"] / seconds, 1),
            requests=int(result["requests"]),
            p50_ms=result["p50"],
            p90_ms=result["p90"],
            p99_ms=result["p99"],
            max_ms=result["max"],
            non_2xx=int(result["non2xx"]),
            socket_errors=int(result["errors"]),
            customers=customers,
            distinct_events=args.events,
            steal_pct=round(steal, 2),
        )
        verdict = "kept" if steal <= args.max_steal else "discarded (steal)"
        print(
            f"run {n + 1}: {run.events_per_s:.0f} events/s "
            f"({run.deliveries_per_s:.0f} deliveries/s), p50 {run.p50_ms} ms, "
            f"p99 {run.p99_ms} ms, max {run.max_ms} ms, non-2xx {run.non_2xx}, "
            f"customers {customers}/{args.events}, steal {run.steal_pct}% -> {verdict}",
            file=sys.stderr,
            flush=True,
        )
        if customers != args.events or run.non_2xx or run.socket_errors:
            raise SystemExit(f"run {n + 1} lost, doubled or refused events: {asdict(run)}")
        if steal <= args.max_steal:
            kept.append(run)
    if not kept:
        raise SystemExit("every run was taken during CPU steal; try again later")
    result_file = ROOT / "bench-results" / "webhook_wrk.json"
    result_file.parent.mkdir(exist_ok=True)
    summary = {
        "runs": [asdict(r) for r in kept],
        "median_events_per_s": statistics.median(r.events_per_s for r in kept),
        "median_deliveries_per_s": statistics.median(r.deliveries_per_s for r in kept),
        "median_p50_ms": statistics.median(r.p50_ms for r in kept),
        "median_p99_ms": statistics.median(r.p99_ms for r in kept),
    }
    result_file.write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
