"""``licensing-harness gate``: one command that says whether a release may ship.

By default it starts the reference service (a temporary SQLite file,
``--test-clock``, a generated webhook secret), provisions licenses through
the service's public API (signed checkout webhooks, then instant
validation), runs a Locust workload in a subprocess, runs the live
invariant checks alongside it, and judges everything against the
thresholds of a gate.toml. ``--target URL`` does the same against an
external deployment; checks that need the test clock are skipped with the
reason.

The gate's own process does not take part in the load: Locust runs in its
own process (pinned to the second core when there is one, the service to
the first), so a slow gate cannot slow the load it measures.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets as secrets_module
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import httpx

import loadtests
from fixtures.stripe.delivery import DeliveryOptions, plan
from fixtures.stripe.lifecycle import simulate
from fixtures.stripe.recording import write_stream
from licensing_service.contract import routes
from loadtests.harness import report
from loadtests.harness.checks.runner import run_checks
from loadtests.harness.gate_config import (
    ConfigError,
    GateConfig,
    load_config,
    parse_duration,
    with_load,
)
from loadtests.harness.model import CheckResult, LoadSummary, Outcome
from loadtests.harness.processes import free_port, stop_group
from loadtests.harness.provision import provision, write_credentials
from loadtests.harness.steal import cpu_times, steal_pct
from loadtests.harness.verdicts import evaluate, exit_code

HARNESS_ERROR = 2

WORKLOADS = {
    "validation": "validation_fleet.py",
    "sessions": "session_fleet.py",
    "webhooks": "webhook_storm.py",
    "mixed": "mixed_fleet.py",
    "open": "open_model.py",
}


class GateError(Exception):
    """The gate could not do its job (exit 2): the result is unknown, not a failure."""


@dataclass(frozen=True, slots=True)
class GateOptions:
    target: str | None = None
    config: Path | None = None
    report_dir: Path = Path("var/gate")
    duration: str | None = None  # overrides [load].duration
    users: int | None = None  # overrides [load].users
    credentials: Path | None = None  # --target without a webhook secret
    webhook_secrets: tuple[str, ...] = ()
    pin: bool = True
    out: TextIO = field(default=sys.stdout)


def main(options: GateOptions) -> int:
    try:
        config = load_config(options.config)
        config = _overridden(config, options)
    except ConfigError as exc:
        print(f"gate: configuration refused: {exc}", file=sys.stderr)
        return HARNESS_ERROR
    try:
        return _run(config, options)
    except GateError as exc:
        print(f"gate: {exc}", file=sys.stderr)
        return HARNESS_ERROR


def _overridden(config: GateConfig, options: GateOptions) -> GateConfig:
    changes: dict[str, int] = {}
    if options.duration is not None:
        changes["duration_s"] = parse_duration(options.duration, "--duration")
    if options.users is not None:
        if options.users < 1:
            raise ConfigError("--users", "must be at least 1")
        changes["users"] = options.users
    return with_load(config, **changes)


def _run(config: GateConfig, options: GateOptions) -> int:
    started = time.monotonic()
    report_dir = options.report_dir
    report_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="lh-gate-"))  # credentials live here, not in the report
    try:
        with _service(options, work) as (base_url, secrets, managed):
            creds = _licenses(base_url, secrets, config, options, work)
            stream = _stream(config, secrets, work)
            env = _locust_env(base_url, creds, stream, secrets, report_dir, options, config)
            checks: list[CheckResult] = []

            def check_after_warmup() -> None:
                # Yield the shared core to Locust: the checks' own CPU (simulating a
                # stream, signing, parsing) must not delay the load generator, or its
                # clients' waiting shows up as the service's latency.
                with contextlib.suppress(OSError, AttributeError):
                    os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
                # Alongside the measured load, not the spawning of its users.
                time.sleep(min(config.load.warmup_s, config.load.duration_s / 2))
                checks.extend(run_checks(base_url, secrets, config.checks, progress=_note))

            checker = threading.Thread(target=check_after_warmup, daemon=True)
            steal_before = cpu_times()
            locust = _start_locust(config, base_url, env, report_dir, options)
            _pin_self(options)
            checker.start()
            _wait(locust, checker, config, options.out)
            steal = steal_pct(steal_before, cpu_times())
            summary = _read_summary(report_dir / "results.json")
            meta = {
                "target": options.target or f"reference service ({base_url})",
                "managed_service": managed,
                "started": datetime.now(UTC).isoformat(),
                "seconds": round(time.monotonic() - started, 1),
                "locust_exit": locust.returncode,
                "cpu_steal_pct": steal,
            }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    verdicts = evaluate(config, summary, checks, steal_pct=steal)
    code = exit_code(verdicts)
    report.print_table(verdicts, options.out, summary)
    report.write_json(
        report_dir / "summary.json", config, summary, checks, verdicts, {**meta, "exit_code": code}
    )
    report.write_junit(report_dir / "junit.xml", verdicts)
    charts = report.write_charts(report_dir, summary) if summary is not None else []
    written = ", ".join(p.name for p in [report_dir / "locust.html", *charts] if p.exists())
    if steal is not None:
        print(f"CPU steal during the load: {steal}%", file=options.out)
    print(
        f"\ngate: {'PASS' if code == 0 else 'FAIL' if code == 1 else 'ERROR'} "
        f"(exit {code}); report in {report_dir}/ ({written}, summary.json, junit.xml)",
        file=options.out,
    )
    return code


# ------------------------------------------------------------------ service


@contextlib.contextmanager
def _service(options: GateOptions, work: Path) -> Iterator[tuple[str, list[str], bool]]:
    if options.target is not None:
        base = options.target.rstrip("/")
        _reachable(base)
        secrets = list(options.webhook_secrets) or _env_secrets()
        yield base, secrets, False
        return
    secret = "whsec_gate_" + secrets_module.token_hex(16)
    port = free_port()
    env = {
        **os.environ,
        "STRIPE_WEBHOOK_SECRET": secret,
        "LH_ENVIRONMENT": "test",
        "LH_LOG_LEVEL": "warning",
    }
    cmd = [
        sys.executable,
        "-m",
        "licensing_service",
        "serve",
        "--test-clock",
        "--port",
        str(port),
        "--db",
        str(work / "gate.db"),
    ]
    log = (work / "service.log").open("wb")
    process = subprocess.Popen(
        _pinned(cmd, 0, options.pin),
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, process, work / "service.log")
        yield base, [secret], True
    finally:
        stop_group(process)
        log.close()


def _env_secrets() -> list[str]:
    raw = os.environ.get("STRIPE_WEBHOOK_SECRET", "")
    return [s.strip() for s in raw.split(",") if s.strip()]


def _reachable(base: str) -> None:
    try:
        response = httpx.get(base + routes.HEALTH_LIVE, timeout=5)
    except httpx.HTTPError as exc:
        raise GateError(f"cannot reach {base}: {type(exc).__name__}") from None
    if response.status_code != 200:
        raise GateError(f"{base}{routes.HEALTH_LIVE} answered {response.status_code}")


def _wait_ready(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise GateError(f"the service exited at start:\n{log.read_text(errors='replace')}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(base + routes.HEALTH_READY, timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise GateError("the service did not become ready within 30 s")


def _pin_self(options: GateOptions) -> None:
    """The checks run in this process: keep them off the service's core."""
    if options.pin and (os.cpu_count() or 1) >= 2 and hasattr(os, "sched_setaffinity"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {1})


def _pinned(cmd: list[str], core: int, pin: bool) -> list[str]:
    """Service on core 0, load on core 1, when there are two cores and taskset."""
    if pin and (os.cpu_count() or 1) >= 2 and shutil.which("taskset"):
        return ["taskset", "-c", str(core), *cmd]
    return cmd


# ------------------------------------------------------------------ inputs


def _licenses(
    base: str, secrets: Sequence[str], config: GateConfig, options: GateOptions, work: Path
) -> Path:
    path = work / "credentials.jsonl"
    if options.credentials is not None:
        if not options.credentials.exists():
            raise GateError(f"--credentials {options.credentials} does not exist")
        shutil.copy(options.credentials, path)
        return path
    if not secrets:
        raise GateError(
            "no way to create licenses on the target: give its webhook secret "
            "(STRIPE_WEBHOOK_SECRET or --webhook-secret) or --credentials FILE"
        )
    _note(f"provisioning {config.load.customers} licenses through signed checkouts")
    try:
        creds = provision(base, secrets, config.load.customers, seed=int(time.time()))
    except Exception as exc:
        raise GateError(f"provisioning failed: {exc}") from exc
    write_credentials(path, creds)
    return path


def _stream(config: GateConfig, secrets: Sequence[str], work: Path) -> Path | None:
    if config.load.workload not in ("webhooks", "mixed") or not secrets:
        return None
    # Emails unique to this run, so a re-run against the same service meets no one it knows.
    seed = int(time.time() * 1000) % 2**31
    stream = simulate(100, 6, seed)
    deliveries = plan(
        stream.events, DeliveryOptions(seed=seed, duplicate_rate=0.2, forgery_rate=0.01)
    )
    path = work / "storm.jsonl"
    write_stream(path, deliveries, {"seed": seed, "customers": 100, "months": 6})
    return path


def _locust_env(
    base: str,
    creds: Path,
    stream: Path | None,
    secrets: Sequence[str],
    report_dir: Path,
    options: GateOptions,
    config: GateConfig,
) -> dict[str, str]:
    env = {
        **os.environ,
        "LH_LOAD_CREDENTIALS": str(creds),
        "LH_LOAD_RESULTS": str(report_dir / "results.json"),
        "LH_LOAD_USERS": str(config.load.users),
        "LH_LOAD_SECONDS": str(config.load.duration_s),
        "LH_LOAD_WARMUP": str(config.load.warmup_s),
        "LH_OPEN_RATE": str(config.load.open_rate),
        "LH_OPEN_SECONDS": str(config.load.duration_s),
    }
    if config.load.abort_early and options.config is not None:
        env["LH_GATE_CONFIG"] = str(options.config)
    if stream is not None:
        env["LH_LOAD_STREAM"] = str(stream)
        env["LH_WEBHOOK_SECRET"] = ",".join(secrets)
    (report_dir / "results.json").unlink(missing_ok=True)
    return env


# ------------------------------------------------------------------ running


def _start_locust(
    config: GateConfig, base: str, env: dict[str, str], report_dir: Path, options: GateOptions
) -> subprocess.Popen[bytes]:
    load = config.load
    locustfile = Path(loadtests.__file__).parent / WORKLOADS[load.workload]
    cmd = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(locustfile),
        "--headless",
        "--host",
        base,
        "--users",
        str(load.users),
        "--spawn-rate",
        str(load.spawn_rate),
        "--run-time",
        f"{int(load.duration_s)}s",
        "--stop-timeout",
        "5",
        "--html",
        str(report_dir / "locust.html"),
        "--only-summary",
        "--exit-code-on-error",
        "0",
        "--loglevel",
        "WARNING",
    ]
    if load.processes != 1:
        # A port of our own: with the default one, two runs on a machine mix their workers.
        port = str(free_port())
        cmd += [
            "--processes",
            str(load.processes),
            "--master-bind-host",
            "127.0.0.1",
            "--master-bind-port",
            port,
            "--master-host",
            "127.0.0.1",
            "--master-port",
            port,
        ]
    # The child keeps its own copy of the descriptor; ours is closed at once.
    with (report_dir / "locust.log").open("wb") as log:
        return subprocess.Popen(
            _pinned(cmd, 1, options.pin),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _wait(
    locust: subprocess.Popen[bytes], checker: threading.Thread, config: GateConfig, out: TextIO
) -> None:
    """Progress while the load runs; bounded even if Locust hangs."""
    duration = config.load.duration_s
    started = time.monotonic()
    while locust.poll() is None or checker.is_alive():
        elapsed = time.monotonic() - started
        if elapsed > duration + 90:
            stop_group(locust)
            raise GateError("the load did not finish within its duration + 90 s")
        _progress(out, elapsed, duration, locust.poll() is None, checker.is_alive())
        time.sleep(0.5)
    _progress(out, duration, duration, False, False, done=True)


def _progress(
    out: TextIO, elapsed: float, duration: float, load: bool, checks: bool, done: bool = False
) -> None:
    width = 30
    filled = min(width, int(width * elapsed / max(duration, 1)))
    state = "load running" if load else "load done"
    state += ", checks running" if checks else ", checks done"
    line = (
        f"\rgate [{'#' * filled}{'.' * (width - filled)}] {elapsed:5.0f}/{duration:.0f} s  {state}"
    )
    print(line, end="\n" if done else "", file=sys.stderr, flush=True)


def _read_summary(path: Path) -> LoadSummary | None:
    if not path.exists():
        return None
    try:
        return LoadSummary.from_dict(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError) as exc:
        raise GateError(f"unreadable load results {path}: {exc}") from exc


def _note(message: str) -> None:
    print(f"\n  {message}", file=sys.stderr, flush=True)


__all__ = ["GateOptions", "Outcome", "main"]
