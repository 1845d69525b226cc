"""The reference service for a hostile-input run: a ``serve --test-clock``
subprocess on 127.0.0.1, a temporary SQLite file, a generated webhook secret,
optionally seeded customers and a fake Stripe API, stopped with its group."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from fixtures.stripe.api_server import FakeStripeServer
from loadtests.harness.processes import free_port, stop_group
from loadtests.harness.service_process import wait_ready

STRIPE_TEST_KEY = "sk_test_hostile"  # the fake accepts any sk_test_ key; not a secret


@dataclass(frozen=True)
class Service:
    url: str
    db: Path
    webhook_secret: str
    log: Path
    credentials: list[dict[str, object]] = field(default_factory=list)


@contextlib.contextmanager
def reference_service(
    work: Path,
    *,
    customers: int = 0,
    stripe: bool = True,
    core: int | None = None,
    env: Mapping[str, str] | None = None,
) -> Iterator[Service]:
    """Start the service in ``work`` and yield it once ready (30 s at most).

    Args:
        customers: seeded straight into its database (``seed``), a quarter inactive.
        stripe: point checkout and portal at a fake Stripe API on 127.0.0.1
            (else they answer 503 STRIPE_NOT_CONFIGURED, as documented).
        core: pin the service to this CPU core with ``taskset``.
        env: extra ``LH_*`` settings.
    """
    work.mkdir(parents=True, exist_ok=True)
    db = work / "hostile.db"
    secret = "whsec_hostile_" + secrets.token_hex(12)
    port = free_port()
    with contextlib.ExitStack() as stack:
        environ = {
            **os.environ,
            "STRIPE_WEBHOOK_SECRET": secret,
            "LH_ENVIRONMENT": "test",
            "LH_LOG_LEVEL": "warning",
            # Fuzzers fail credentials on purpose; the limits have their own tests.
            "LH_RATE_LIMIT_IP": "1000000",
            "LH_RATE_LIMIT_EMAIL": "1000000",
            **(env or {}),
        }
        if stripe:
            fake = stack.enter_context(FakeStripeServer(api_key=STRIPE_TEST_KEY))
            environ["STRIPE_API_BASE"] = fake.url
            environ["STRIPE_SECRET_KEY"] = STRIPE_TEST_KEY
        cmd = [sys.executable, "-m", "licensing_service", "serve", "--test-clock"]
        cmd += ["--port", str(port), "--db", str(db)]
        if core is not None:
            cmd = ["taskset", "-c", str(core), *cmd]
        log = work / "service.log"
        sink = stack.enter_context(log.open("wb"))
        process = subprocess.Popen(
            cmd, env=environ, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
        stack.callback(stop_group, process)
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, process, log)
        credentials = _seed(db, customers, work) if customers else []
        yield Service(url, db, secret, log, credentials)


def _seed(db: Path, customers: int, work: Path) -> list[dict[str, object]]:
    out = work / "credentials.jsonl"
    cmd = [sys.executable, "-m", "licensing_service", "seed", "--db", str(db)]
    cmd += ["--customers", str(customers), "--inactive-ratio", "0.25", "--seed", "1"]
    cmd += ["--out", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)
    return [json.loads(line) for line in out.read_text().splitlines() if line]
