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

This module is the run's order; its parts are elsewhere: the service
(``service_process``), the load (``locust_process``), the checks
(``checks.runner``), the judgement (``verdicts``) and the report (``report``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from fixtures.stripe.delivery import DeliveryOptions, plan
from fixtures.stripe.lifecycle import simulate
from fixtures.stripe.recording import write_stream
from loadtests.harness import report
from loadtests.harness.charts import limits_from, write_charts
from loadtests.harness.checks.runner import run_checks
from loadtests.harness.cluster import Cluster, Distribution, start_cluster
from loadtests.harness.errors import ConfigError, GateError
from loadtests.harness.gate_config import (
    GateConfig,
    load_config,
    parse_duration,
    parse_millis,
    with_load,
)
from loadtests.harness.locust_process import (
    locust_command,
    locust_env,
    locustfile_of,
    start_locust,
    wait,
)
from loadtests.harness.model import CheckResult, LoadSummary, Outcome
from loadtests.harness.processes import pin_self, stop_group
from loadtests.harness.provision import provision, write_credentials
from loadtests.harness.service_process import service
from loadtests.harness.steal import cpu_times, steal_pct
from loadtests.harness.verdicts import evaluate, exit_code, judge_workers

HARNESS_ERROR = 2


@dataclass(frozen=True, slots=True)
class GateOptions:
    target: str | None = None
    config: Path | None = None
    report_dir: Path = Path("var/gate")
    duration: str | None = None  # overrides [load].duration
    users: int | None = None  # overrides [load].users
    propagation: str | None = None  # overrides [checks].propagation
    credentials: Path | None = None  # --target without a webhook secret
    webhook_secrets: tuple[str, ...] = ()
    pin: bool = True
    distribution: Distribution = field(default_factory=Distribution)  # --workers, --master
    out: TextIO = field(default=sys.stdout)


def main(options: GateOptions) -> int:
    try:
        config = load_config(options.config)
        config = _overridden(config, options)
    except ConfigError as exc:
        problems = "".join(f"\n  {line}" for line in str(exc).splitlines())
        print(f"gate: configuration refused:{problems}", file=sys.stderr)
        return HARNESS_ERROR
    try:
        return _run(config, options)
    except GateError as exc:
        print(f"gate: {exc}", file=sys.stderr)
        return HARNESS_ERROR


def _overridden(config: GateConfig, options: GateOptions) -> GateConfig:
    spread = options.distribution
    for option, problem in spread.problems():
        raise ConfigError(option, problem)
    if spread.distributed and config.load.processes != 1:
        raise ConfigError("--workers", "is Locust's --processes done our way: not both")
    if spread.distributed and config.load.customers < spread.expected:
        need = f"needs a license per worker: load.customers is {config.load.customers}"
        raise ConfigError("--workers", need)
    changes: dict[str, int] = {}
    if options.duration is not None:
        changes["duration_s"] = parse_duration(options.duration, "--duration")
    if options.users is not None:
        if options.users < 1:
            raise ConfigError("--users", "must be at least 1")
        changes["users"] = options.users
    if options.propagation is not None:
        propagation_ms = parse_millis(options.propagation, "--propagation")
        config = replace(config, propagation_ms=propagation_ms)
    return with_load(config, **changes)


def _run(config: GateConfig, options: GateOptions) -> int:
    started = time.monotonic()
    report_dir = options.report_dir
    report_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="lh-gate-"))  # credentials live here, not in the report
    try:
        running = service(options.target, options.webhook_secrets, work, pin=options.pin)
        with running as (base_url, secrets, managed):
            creds = _licenses(base_url, secrets, config, options, work)
            stream = _stream(config, secrets, work)
            env = locust_env(creds, stream, secrets, report_dir, config, options.config)
            checks: list[CheckResult] = []

            def check_after_warmup() -> None:
                # Yield the shared core to Locust: the checks' own CPU (simulating a
                # stream, signing, parsing) must not delay the load generator, or its
                # clients' waiting shows up as the service's latency.
                with contextlib.suppress(OSError, AttributeError):
                    os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
                # Alongside the measured load, not the spawning of its users.
                time.sleep(min(config.load.warmup_s, config.load.duration_s / 2))
                checks.extend(
                    run_checks(
                        base_url,
                        secrets,
                        config.checks,
                        progress=_note,
                        propagation_seconds=config.propagation_ms / 1000,
                    )
                )

            checker = threading.Thread(target=check_after_warmup, daemon=True)
            with _load(config, base_url, env, report_dir, options) as (locust, workers):
                # From the load's start: a master first waits for its workers.
                steal_before = cpu_times()
                pin_self(options.pin)
                checker.start()
                wait(locust, checker, config, options.out, workers.note if workers else None)
                roll = workers.finish() if workers is not None else None
            steal = steal_pct(steal_before, cpu_times())
            summary = _read_summary(report_dir / "results.json")
            meta = {
                "target": options.target or f"reference service ({base_url})",
                "managed_service": managed,
                "started": datetime.now(UTC).isoformat(),
                "seconds": round(time.monotonic() - started, 1),
                "locust_exit": locust.returncode,
                "cpu_steal_pct": steal,
                "workers": asdict(roll) if roll is not None else None,
            }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    verdicts = evaluate(config, summary, checks, steal_pct=steal)
    if options.distribution.distributed:
        verdicts.append(judge_workers(options.distribution.expected, roll))
    code = exit_code(verdicts)
    report.print_table(verdicts, options.out, summary)
    report.write_json(
        report_dir / "summary.json", config, summary, checks, verdicts, {**meta, "exit_code": code}
    )
    report.write_junit(report_dir / "junit.xml", verdicts)
    limits = limits_from([(t.select, t.metric, t.max) for t in config.thresholds if t.is_latency])
    charts = (
        write_charts(report_dir, summary, warmup_s=config.load.warmup_s, limits=limits)
        if summary is not None
        else []
    )
    written = ", ".join(p.name for p in [report_dir / "locust.html", *charts] if p.exists())
    if steal is not None:
        print(f"CPU steal during the load: {steal}%", file=options.out)
    print(
        f"\ngate: {'PASS' if code == 0 else 'FAIL' if code == 1 else 'ERROR'} "
        f"(exit {code}); report in {report_dir}/ ({written}, summary.json, junit.xml)",
        file=options.out,
    )
    return code


@contextlib.contextmanager
def _load(
    config: GateConfig, base: str, env: dict[str, str], report_dir: Path, options: GateOptions
) -> Iterator[tuple[subprocess.Popen[bytes], Cluster | None]]:
    """One Locust process, or a master and its workers once they have all connected;
    whatever still runs is stopped on the way out."""
    spread = options.distribution
    if not spread.distributed:
        locust = start_locust(config, base, env, report_dir, pin=options.pin)
        try:
            yield locust, None
        finally:
            stop_group(locust)
        return
    base_cmd = locust_command(config, base, report_dir)
    with start_cluster(
        lambda extra: [*base_cmd, *extra],
        locustfile_of(config),
        env,
        report_dir,
        spread,
        pin=options.pin,
    ) as running:
        running.wait_connected(options.out)
        yield running.master, running


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
