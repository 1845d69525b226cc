"""Throughput and p99 of POST /validate-unified (operation validate) under wrk.

One server process pinned to one core, wrk pinned to the other, 64
connections, every request a full validation of a random seeded active
license (lookup, tier, fingerprint, UPDATE + commit, audit). The HTTP stacks
(``--variants``, all by default) are measured side by side in one run, each
on its own copy of the seeded database:

    inline          the service as shipped: dispatcher on uvicorn + the inline accelerator
    asgi            the same with LH_INLINE_HTTP=false (uvicorn's ASGI path)
    granian-asgi    the same dispatcher served by granian over ASGI
    granian-rsgi    the same dispatcher served by granian over RSGI
    starlette       the same handlers routed by Starlette (Router/Request/Response) on uvicorn
    bare-starlette  a bare Starlette JSON endpoint on uvicorn: the machine's yardstick

Runs are repeated, runs taken while the machine suffered CPU steal are
discarded, the medians are reported with each variant's ratio to
bare-starlette. Before measuring, every variant must answer one validation
correctly; afterwards, every run must have zero non-2xx answers.

    .venv/bin/python benchmarks/validate_throughput.py [--runs 5] [--seconds 15]
        [--variants inline,asgi,...]

The granian variants need the [bench] extra (``pip install -e '.[bench]'``).
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
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
from common import CLI, PYTHON, ROOT, cpu_times, start, stop

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


VARIANTS = ("inline", "asgi", "granian-asgi", "granian-rsgi", "starlette", "bare-starlette")
BENCH = Path(__file__).resolve().parent
GRANIAN = ROOT / ".venv" / "bin" / "granian"
# uvicorn as api/server.py's BASE_OPTIONS configure it, with plain httptools.
UVICORN_AS_SERVED = (
    "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--no-proxy-headers",
    "--no-server-header", "--lifespan", "on", "--log-level", "warning",
)  # fmt: skip
# granian on one core: one worker, its single-threaded runtime.
GRANIAN_ON_ONE_CORE = (
    "--workers", "1", "--runtime-mode", "st", "--runtime-threads", "1", "--loop", "uvloop",
    "--no-ws", "--log-level", "warning", "--factory", "--working-dir", str(BENCH),
)  # fmt: skip


@dataclass
class Target:
    name: str
    port: int
    cmd: list[str]
    env: dict[str, str] | None = None
    # Says whether one parsed answer to the benchmark's request is right.
    answer_ok: Callable[[object], bool] = field(default=lambda _: False)


def valid_validation(body: object) -> bool:
    validation = body.get("validation") if isinstance(body, dict) else None
    return isinstance(validation, dict) and validation.get("valid") is True


def targets_for(names: list[str], work: Path, db: Path) -> list[Target]:
    def database(name: str) -> Path:
        # Its own copy: two servers never share a write lock.
        copy = work / f"{name}.db"
        shutil.copy(db, copy)
        return copy

    def service_env(name: str, **extra: str) -> dict[str, str]:
        return {**os.environ, "LH_DB": str(database(name)), **extra}

    built: list[Target] = []
    for index, name in enumerate(names):
        port = 8791 + index
        serve = [str(CLI), "serve", "--port", str(port)]
        here = ("--host", "127.0.0.1", "--port", str(port))
        if name == "inline":
            target = Target(name, port, serve, service_env(name), valid_validation)
        elif name == "asgi":
            env = service_env(name, LH_INLINE_HTTP="false")
            target = Target(name, port, serve, env, valid_validation)
        elif name in ("granian-asgi", "granian-rsgi"):
            interface = name.split("-")[1]
            cmd = [str(GRANIAN), "--interface", interface, *here, *GRANIAN_ON_ONE_CORE]
            cmd.append(f"server_variants:granian_{interface}")
            target = Target(name, port, cmd, service_env(name), valid_validation)
        elif name == "starlette":
            cmd = [str(PYTHON), "-m", "uvicorn", "server_variants:starlette_app", "--factory"]
            cmd += [*here, *UVICORN_AS_SERVED, "--app-dir", str(BENCH)]
            target = Target(name, port, cmd, service_env(name), valid_validation)
        else:
            cmd = [str(PYTHON), "-m", "uvicorn", "baseline:app", "--port", str(port)]
            # As in every earlier run of this benchmark (uvicorn's defaults otherwise).
            cmd += ["--loop", "uvloop", "--http", "httptools", "--no-access-log"]
            cmd += ["--log-level", "warning", "--app-dir", str(work)]
            target = Target(name, port, cmd, None, lambda b: b == {"success": True, "valid": True})
        built.append(target)
    return built


def check_answers(target: Target, creds: Path, timeout: float = 60) -> None:
    """Wait for the server, then one validation must be answered correctly."""
    first = json.loads(creds.read_text().splitlines()[0])
    body = {
        "operation": "validate",
        "credentials": {"email": first["email"], "token": first["token"]},
        "device": {"machineFingerprint": "bench-till-0", "skipMachineUpdate": True},
    }
    url = f"http://127.0.0.1:{target.port}/validate-unified"
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = httpx.post(url, json=body, timeout=5)
            break
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise SystemExit(f"{target.name} did not start on port {target.port}") from None
            time.sleep(0.2)
    if response.status_code != 200 or not target.answer_ok(response.json()):
        raise SystemExit(
            f"{target.name} answered a validation wrongly:"
            f" {response.status_code} {response.text[:300]}"
        )


def variant_names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(VARIANTS)}; got {unknown}")
    return names


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--customers", type=int, default=10_000)
    ap.add_argument("--max-steal", type=float, default=5.0, help="discard runs above this steal %%")
    ap.add_argument(
        "--variants",
        type=variant_names,
        default=list(VARIANTS),
        help=f"comma-separated, measured in this order (default: {','.join(VARIANTS)})",
    )
    ap.add_argument("--out", type=Path, default=ROOT / "bench-results" / "validate.json")
    args = ap.parse_args()
    if not shutil.which("wrk") or not shutil.which("taskset"):
        raise SystemExit("needs wrk and taskset (apt-get install wrk util-linux)")
    if any(n.startswith("granian") for n in args.variants) and not GRANIAN.exists():
        raise SystemExit("the granian variants need the bench extra: pip install -e '.[bench]'")

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

    targets = targets_for(args.variants, work, db)
    procs = [start(t.cmd, 0, t.env) for t in targets]
    runs: list[Run] = []
    try:
        for target in targets:
            check_answers(target, creds)
            print(f"{target.name}: answers a validation correctly", flush=True)
        for target in targets:
            wrk(f"http://127.0.0.1:{target.port}", script, 3, args.connections, 1, target.name)
        total, done = args.runs * len(targets), 0
        for i in range(args.runs):
            for target in targets:
                run = wrk(
                    f"http://127.0.0.1:{target.port}",
                    script,
                    args.seconds,
                    args.connections,
                    1,
                    target.name,
                )
                runs.append(run)
                done += 1
                flag = "" if run.steal_pct <= args.max_steal else "  (discarded: steal)"
                print(
                    f"[{done}/{total}] run {i + 1} {target.name:15s}"
                    f" {run.requests_per_s:8.0f} req/s"
                    f"  p50 {run.p50_ms:6.2f} ms  p99 {run.p99_ms:6.2f} ms"
                    f"  non-2xx {run.non_2xx}  errors {run.errors}"
                    f"  steal {run.steal_pct:.1f}%{flag}",
                    flush=True,
                )
    finally:
        for proc in procs:
            stop(proc)

    summary: dict[str, object] = {
        "connections": args.connections,
        "seconds": args.seconds,
        "variants": args.variants,
        "runs": [asdict(r) for r in runs],
    }
    medians: dict[str, dict[str, float]] = {}
    for target in targets:
        kept = [r for r in runs if r.target == target.name and r.steal_pct <= args.max_steal]
        if not kept:
            print(f"{target.name}: every run was taken during CPU steal; no figure", flush=True)
            continue
        medians[target.name] = {
            "requests_per_s": statistics.median(r.requests_per_s for r in kept),
            "p50_ms": statistics.median(r.p50_ms for r in kept),
            "p99_ms": statistics.median(r.p99_ms for r in kept),
            "runs_kept": len(kept),
        }
    yardstick = medians.get("bare-starlette", {}).get("requests_per_s")
    for name, med in medians.items():
        ratio = f"  {med['requests_per_s'] / yardstick:.2f} of bare Starlette" if yardstick else ""
        if yardstick:
            med["ratio_to_bare_starlette"] = round(med["requests_per_s"] / yardstick, 3)
        print(
            f"median {name:15s} {med['requests_per_s']:8.0f} req/s  p50 {med['p50_ms']:.2f} ms"
            f"  p99 {med['p99_ms']:.2f} ms  ({med['runs_kept']:.0f} runs kept){ratio}",
            flush=True,
        )
    summary["medians"] = medians
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    # Socket errors are reported per run (wrk's timeouts can be the machine's);
    # a non-2xx answer is a wrong one.
    failed = [r for r in runs if r.non_2xx]
    for run in failed:
        print(f"{run.target}: {run.non_2xx} non-2xx answers", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
