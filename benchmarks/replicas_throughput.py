"""Validation throughput of 1, 2 and 4 replicas on PostgreSQL against one on
SQLite, in the same run.

Every replica set is started at once (replicas pinned to core 0, as the gate's
service is), each on a database of its own (SQLite: a temp file; PostgreSQL: a
database ``lh_bench_replicas_N`` made and dropped here), with 200 licenses
provisioned through the API. Then, run after run, each set in turn is driven by
one wrk per replica (on core 1, 64 connections shared among them), straight at
the replicas' own ports: the Python proxy in front of them would be the
bottleneck, not the replicas. Requests/s are summed, p99 is the worst replica's.
Runs with CPU steal above 5% are flagged; medians over the runs are reported.

    .venv/bin/python benchmarks/replicas_throughput.py [--runs 5] [--seconds 8]
        [--pg postgresql://postgres@127.0.0.1:5432/postgres]

Traffic goes only to 127.0.0.1; every wrk run is bounded by --seconds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from common import cpu_times
from validate_throughput import WRK_SCRIPT, parse_latency

from loadtests.harness.provision import provision
from scenarios.replicas import ReplicaSet

SETS = (("sqlite", 1), ("postgresql", 1), ("postgresql", 2), ("postgresql", 4))
CONNECTIONS = 64
WRK = ("taskset", "-c", "1", "wrk", "-t1")
LICENSES = 200


def _admin(url: str):  # type: ignore[no-untyped-def]
    import psycopg

    return psycopg.connect(url, autocommit=True, connect_timeout=3)


def _database(admin: str, name: str) -> str:
    with _admin(admin) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())
        conn.execute(f'CREATE DATABASE "{name}"'.encode())
    return urlunsplit(urlsplit(admin)._replace(path="/" + name))


def _drop(admin: str, name: str) -> None:
    with _admin(admin) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


def _drive(replicas: ReplicaSet, script: Path, seconds: int) -> dict[str, float]:
    per = max(1, CONNECTIONS // len(replicas.urls))
    before = cpu_times()
    procs = [
        subprocess.Popen(
            [*WRK, f"-c{per}", f"-d{seconds}s", "--latency", "-s", str(script), url],
            stdout=subprocess.PIPE,
            text=True,
        )
        for url in replicas.urls
    ]
    outs = [p.communicate(timeout=seconds + 30)[0] for p in procs]
    after = cpu_times()
    rps = 0.0
    p99 = 0.0
    non_2xx = 0
    for out in outs:
        rps += float(out.split("Requests/sec:")[1].split()[0])
        p99 = max(p99, parse_latency(out, "99%"))
        if "Non-2xx or 3xx responses:" in out:
            non_2xx += int(out.split("Non-2xx or 3xx responses:")[1].split()[0])
    steal = 100 * (after[1] - before[1]) / max(1, after[0] - before[0])
    return {"rps": rps, "p99_ms": p99, "non_2xx": non_2xx, "steal_pct": round(steal, 2)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lh-bench-replicas-"))
    results: dict[str, list[dict[str, float]]] = {}
    with ExitStack() as stack:
        sets: dict[str, tuple[ReplicaSet, Path]] = {}
        for store, count in SETS:
            name = f"{store}x{count}"
            if store == "sqlite":
                db: Path | str = work / f"{name}.db"
            else:
                db = _database(args.pg, f"lh_bench_replicas_{count}")
                stack.callback(_drop, args.pg, f"lh_bench_replicas_{count}")
            replicas = stack.enter_context(ReplicaSet(db, count, work / name, pin=True))
            creds = provision(replicas.urls[0], replicas.secrets, LICENSES, seed=1, prefix=name)
            lines = work / f"{name}.jsonl"
            lines.write_text(
                "".join(json.dumps({"email": c.email, "token": c.token}) + "\n" for c in creds)
            )
            script = work / f"{name}.lua"
            script.write_text(WRK_SCRIPT % {"creds": lines})
            sets[name] = (replicas, script)
            print(f"{name}: ready", file=sys.stderr)
        for run in range(args.runs):
            for name, (replicas, script) in sets.items():
                result = _drive(replicas, script, args.seconds)
                results.setdefault(name, []).append(result)
                print(f"run {run + 1} {name}: {result}", file=sys.stderr)
                time.sleep(1)
    with open("/proc/loadavg") as loadavg:
        load = loadavg.read().split()[:3]
    summary = {
        name: {
            "median_rps": round(statistics.median(r["rps"] for r in runs)),
            "median_p99_ms": round(statistics.median(r["p99_ms"] for r in runs), 2),
            "max_steal_pct": max(r["steal_pct"] for r in runs),
            "non_2xx": sum(int(r["non_2xx"]) for r in runs),
        }
        for name, runs in results.items()
    }
    print(json.dumps({"runs": args.runs, "seconds": args.seconds, "loadavg": load, **summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
