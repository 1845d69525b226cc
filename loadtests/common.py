"""What every workload shares: its settings, the licenses it drives, answer
checks, and the measurement plugin.

Workloads are configured through environment variables (the gate sets them;
a person running ``locust -f loadtests/<file>.py`` can too):

- ``LH_LOAD_CREDENTIALS`` (required): licenses to drive, JSON lines from ``provision``;
- ``LH_LOAD_RESULTS``: where the master writes the exact-percentile summary (JSON);
- ``LH_LOAD_HDR``: where the master writes the merged histograms themselves (encoded);
- ``LH_LOAD_STATUS``: where a master writes its roll of workers (``workers.Roll``);
- ``LH_LOAD_CACHE_SCALE`` (0.00005): seconds waited per second of cache hint
  (3600 s → 0.18 s);
- ``LH_LOAD_HEARTBEAT_SECONDS`` (0.5): a session device's heartbeat interval
  (real tills: 30 s);
- ``LH_LOAD_BURST`` (0): 1 makes validation devices ignore the cache hint;
- ``LH_LOAD_STREAM``: the webhook storm's stream (``stripe generate`` output);
- ``LH_STORM_RATE`` (20): deliveries per second per storm user (0: back to back);
- ``LH_WEBHOOK_SECRET``: the storm's signing secret(s), comma-separated;
- ``LH_LOAD_SHAPE``: ramp, spike or soak, a ``LoadTestShape`` instead of -u/-r/-t;
- ``LH_GATE_CONFIG``: a gate.toml, which enables abort-early on the master;
- ``LH_LOAD_WARMUP`` (0): seconds at the start whose successful requests are left
  out of the latency and throughput figures (they stay on the timeline).

A Locust worker of a distributed run needs none of these set: its master sends it its
share of the licenses and of the stream, the secrets and the settings at test start
(``harness/workers.py``), and it points these variables at its own copies.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from locust import events
from locust.env import Environment

from loadtests.harness import hdr, workers

# Request names and their tags: thresholds select by either.
TAGS: dict[str, tuple[str, ...]] = {
    "validate": ("licensing", "validation"),
    "validate burst": ("licensing", "validation"),
    "validate open": ("licensing", "validation", "open"),
    "session start": ("licensing", "sessions"),
    "session heartbeat": ("licensing", "sessions"),
    "session takeover": ("licensing", "sessions"),
    "session end": ("licensing", "sessions"),
    "webhook": ("stripe",),
}


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SystemExit(f"{name} must be a number, got {raw!r}") from None
    if value < 0:
        raise SystemExit(f"{name} must not be negative, got {raw!r}")
    return value


@dataclass(frozen=True, slots=True)
class License:
    email: str
    token: str
    fingerprint: str
    stripe_session_id: str


class LicensePool:
    """The licenses of this process, handed out round-robin; ``partition``
    keeps workloads apart (a session fleet and a validation fleet sharing a
    license would see each other's device changes)."""

    def __init__(self, licenses: list[License]) -> None:
        if not licenses:
            raise SystemExit("LH_LOAD_CREDENTIALS holds no licenses")
        self.licenses = licenses
        self._lock = threading.Lock()
        self._counters: dict[str, Iterator[int]] = {}

    def take(self, partition: str, share: tuple[float, float] = (0.0, 1.0)) -> License:
        low = int(len(self.licenses) * share[0])
        high = max(low + 1, int(len(self.licenses) * share[1]))
        chunk = self.licenses[low:high]
        with self._lock:
            counter = self._counters.setdefault(partition, itertools.count())
            return chunk[next(counter) % len(chunk)]


_pool: LicensePool | None = None


def licenses() -> LicensePool:
    global _pool
    if _pool is None:
        path = os.environ.get("LH_LOAD_CREDENTIALS")
        if not path:
            raise SystemExit("set LH_LOAD_CREDENTIALS to a credentials file (JSON lines)")
        rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
        _pool = LicensePool(
            [
                License(r["email"], r["token"], r["fingerprint"], r["stripe_session_id"])
                for r in rows
            ]
        )
    return _pool


def body_of(response: Any) -> dict[str, Any] | None:
    try:
        data = response.json()
    except Exception:  # any undecodable body is a wrong answer
        return None
    return data if isinstance(data, dict) else None


def max_age(response: Any) -> int | None:
    header = response.headers.get("cache-control") or ""
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "max-age" and value.isdigit():
            return int(value)
    return None


# --------------------------------------------------------------- the plugin

_installed: set[int] = set()


def _install_measurement(environment: Environment, **_: Any) -> None:
    # Each workload file imports this module; install once per environment.
    if id(environment) in _installed:
        return
    _installed.add(id(environment))
    hdr.install(
        environment,
        results_path=os.environ.get("LH_LOAD_RESULTS"),
        tags=TAGS,
        warmup_s=env_float("LH_LOAD_WARMUP", 0.0),
        histograms_path=os.environ.get("LH_LOAD_HDR"),
    )
    # A master shares the inputs out, a worker takes its share: see workers.
    workers.install(environment)
    config = os.environ.get("LH_GATE_CONFIG")
    if config:
        from loadtests.harness.abort import watch

        watch(environment, Path(config))


_init_hook: Any = events.init
_init_hook.add_listener(_install_measurement)
