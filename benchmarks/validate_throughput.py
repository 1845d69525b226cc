"""Throughput and p99 of POST /validate-unified (operation validate) under wrk.

One `licensing-harness serve` process pinned to one core, wrk pinned to the
other, 64 connections, every request a full validation of a random seeded
active license (lookup, tier, fingerprint, UPDATE + commit, audit). Runs are
repeated; runs taken while the machine suffered CPU steal are discarded; the
medians are reported. A bare Starlette JSON endpoint on the same uvicorn
set-up is measured in the same run, so the ratio survives a noisy machine.

    .venv/bin/python benchmarks/validate_throughput.py [--runs 5] [--seconds 15]

Traffic goes only to 127.0.0.1 and every wrk run is bounded by --seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from common import CLI, PYTHON, ROOT, cpu_times, start, stop, wait_ready

WRK_SCRIPT = """
local creds = {}
for line in io.lines("%(creds)s") do
  local email, token = line:match('"email": "([^"]+)".-"token": "([^"]+)"')
  if email then creds[#creds + 1] = {email, token} end
end
local n = 0
request = function()
  n = n + 1
  local c = creds[(n %% #creds) + 1]
  local body = '{"operation":"validate","credentials":{"email":"' .. c[1] ..
    '","token":"' .. c[2] .. '"},"device":{"machineFingerprint":"bench-till-' ..
    (n %% 7) .. '","skipMachineUpdate":true}}'
  return wrk.format("POST", "/validate-unified", {["Content-Type"] = "application/json"}, body)
end
"""

BASELINE_APP = """
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
async def ok(request):
    await request.body()
    return JSONResponse({"success": True, "valid": True})
app = Starlette(routes=[Route("/validate-unified", ok, methods=["POST"])])
"""


@dataclass
class Run:
    target: str
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    errors: int
    steal_pct: float


def parse_latency(text: str, label: str) -> float:
    match = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    if not match:
        raise SystemExit(f"no {label} latency in wrk output:\n{text}")
    value, unit = float(match[1]), match[2]
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def wrk(url: str, script: Path, seconds: int, connections: int, core: int, target: str) -> Run:
    before = cpu_times()
    out = subprocess.run(
        [
            "taskset",
            "-c",
            str(core),
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    ).stdout
    after = cpu_times()
    steal = 100 * (after[1] - before[1]) / max(1, after[0] - before[0])
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return Run(
        target,
        rps,
        parse_latency(out, "50%"),
        parse_latency(out, "99%"),
        int(non_2xx[1]) if non_2xx else 0,
        sum(int(g) for g in errors.groups()) if errors else 0,
        round(steal, 2),
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--customers", type=int, default=10_000)
    ap.add_argument("--max-steal", type=float, default=5.0, help="discard runs above this steal %%")
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument(
        "--asgi-too",
        action="store_true",
        help="also measure the service with LH_INLINE_HTTP=false (uvicorn's ASGI path)",
    )
    ap.add_argument("--out", type=Path, default=ROOT / "bench-results" / "validate.json")
    args = ap.parse_args()
    if not shutil.which("wrk") or not shutil.which("taskset"):
        raise SystemExit("needs wrk and taskset (apt-get install wrk util-linux)")

    work = Path(tempfile.mkdtemp(prefix="lh-bench-"))
    db, creds = work / "bench.db", work / "creds.jsonl"
    print(f"seeding {args.customers} customers ...", flush=True)
    subprocess.run(
        [
            str(CLI),
            "seed",
            "--db",
            str(db),
            "--customers",
            str(args.customers),
            "--out",
            str(creds),
        ],
        check=True,
        stderr=subprocess.DEVNULL,
    )
    script = work / "validate.lua"
    script.write_text(WRK_SCRIPT % {"creds": creds})
    (work / "baseline.py").write_text(BASELINE_APP)

    def serve(database: Path, port: int) -> list[str]:
        return [str(CLI), "serve", "--db", str(database), "--port", str(port)]

    targets = {"service": (8791, serve(db, 8791), None)}
    if args.asgi_too:
        # The same service with every request through uvicorn's ASGI path (no inline
        # protocol), on a copy of the database so the two never share a write lock.
        shutil.copy(db, work / "asgi.db")
        targets["service-asgi"] = (
            8793,
            serve(work / "asgi.db", 8793),
            {**os.environ, "LH_INLINE_HTTP": "false"},
        )
    if not args.no_baseline:
        targets["bare-starlette"] = (
            8792,
            [
                str(PYTHON),
                "-m",
                "uvicorn",
                "baseline:app",
                "--port",
                "8792",
                "--loop",
                "uvloop",
                "--http",
                "httptools",
                "--no-access-log",
                "--log-level",
                "warning",
                "--app-dir",
                str(work),
            ],
            None,
        )
    procs = {name: start(cmd, 0, env) for name, (_, cmd, env) in targets.items()}
    runs: list[Run] = []
    try:
        for name, (port, _, _) in targets.items():
            wait_ready(
                f"http://127.0.0.1:{port}/health"
                if name.startswith("service")
                else f"http://127.0.0.1:{port}/validate-unified".replace("validate-unified", "x"),
            ) if name.startswith("service") else time.sleep(1.5)
        total = args.runs * len(targets)
        done = 0
        for name, (port, _, _) in targets.items():
            wrk(f"http://127.0.0.1:{port}", script, 3, args.connections, 1, name)  # warm-up
        for i in range(args.runs):
            for name, (port, _, _) in targets.items():
                run = wrk(
                    f"http://127.0.0.1:{port}", script, args.seconds, args.connections, 1, name
                )
                runs.append(run)
                done += 1
                flag = "" if run.steal_pct <= args.max_steal else "  (discarded: steal)"
                print(
                    f"[{done}/{total}] run {i + 1} {name:15s} {run.requests_per_s:8.0f} req/s"
                    f"  p50 {run.p50_ms:6.2f} ms  p99 {run.p99_ms:6.2f} ms"
                    f"  non-2xx {run.non_2xx}  steal {run.steal_pct:.1f}%{flag}",
                    flush=True,
                )
    finally:
        for proc in procs.values():
            stop(proc)

    summary: dict[str, object] = {
        "connections": args.connections,
        "seconds": args.seconds,
        "runs": [asdict(r) for r in runs],
    }
    for name in targets:
        kept = [r for r in runs if r.target == name and r.steal_pct <= args.max_steal]
        if not kept:
            print(f"{name}: every run was taken during CPU steal; no figure", flush=True)
            continue
        med = {
            "requests_per_s": statistics.median(r.requests_per_s for r in kept),
            "p50_ms": statistics.median(r.p50_ms for r in kept),
            "p99_ms": statistics.median(r.p99_ms for r in kept),
            "runs_kept": len(kept),
            "non_2xx": sum(r.non_2xx for r in kept),
        }
        summary[name] = med
        print(
            f"median {name:15s} {med['requests_per_s']:8.0f} req/s  p50 {med['p50_ms']:.2f} ms"
            f"  p99 {med['p99_ms']:.2f} ms  ({len(kept)} runs kept)",
            flush=True,
        )
    if "service" in summary and "bare-starlette" in summary:
        ratio = summary["service"]["requests_per_s"] / summary["bare-starlette"]["requests_per_s"]  # type: ignore[index]
        summary["ratio_to_bare_starlette"] = round(ratio, 3)
        print(f"service / bare Starlette throughput: {ratio:.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    service = summary.get("service")
    ok = isinstance(service, dict) and service["non_2xx"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
