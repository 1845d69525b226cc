"""``licensing-harness stripe api``: the fake Stripe on a real port, in its own process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from fixtures.stripe.api_server import DEFAULT_KEY

HARNESS = str(Path(sys.executable).with_name("licensing-harness"))


def test_the_command_serves_the_fake_and_says_how_to_point_the_service_at_it() -> None:
    command = [HARNESS, "stripe", "api", "--port", "0"]
    with subprocess.Popen(
        [*command, "--duration", "20"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    ) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert "STRIPE_API_BASE=http://127.0.0.1:" in line, line
            assert f"STRIPE_SECRET_KEY={DEFAULT_KEY}" in line
            base = line.split("STRIPE_API_BASE=", 1)[1].split()[0]
            auth = {"authorization": f"Bearer {DEFAULT_KEY}"}
            created = httpx.post(
                f"{base}/v1/customers", data={"email": "a@b.example"}, headers=auth
            )
            assert created.status_code == 200, created.text
            customer = created.json()["id"]
            assert httpx.get(f"{base}/v1/customers/{customer}", headers=auth).status_code == 200
            refused = httpx.get(f"{base}/v1/customers/{customer}", headers={"authorization": "x"})
            assert refused.status_code == 401
            assert httpx.get(f"{base}/v1/nothing", headers=auth).status_code == 404
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def test_the_command_refuses_a_host_that_is_not_loopback() -> None:
    done = subprocess.run(
        [HARNESS, "stripe", "api", "--host", "192.0.2.1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "loopback" in done.stderr
