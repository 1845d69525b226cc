"""``licensing-harness serve --db postgresql://... --workers N``: the schema
migrated once before the workers start, and every worker serving."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from licensing_service.contract import routes
from tests.live import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_serve_with_two_workers_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    env = {**os.environ, "LH_ENVIRONMENT": "test", "LH_EMAIL_SINK": str(tmp_path / "emails.jsonl")}
    cmd = [sys.executable, "-m", "licensing_harness", "serve", "--db", pg_url]
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [*cmd, "--workers", "2", "--port", str(port)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 40
        ready = False
        while not ready and time.monotonic() < deadline:
            assert process.poll() is None, log.read_text(errors="replace")
            try:
                ready = httpx.get(base + routes.HEALTH_READY, timeout=1).status_code == 200
            except httpx.HTTPError:
                time.sleep(0.1)  # waiting for start-up, not testing time
        assert ready, log.read_text(errors="replace")
        for _ in range(20):  # new connections: both workers answer
            assert httpx.get(base + routes.HEALTH, timeout=5).status_code == 200
        workers = log.read_text(errors="replace").count("Started server process")
        assert workers == 2
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    with psycopg.connect(pg_url) as conn:
        versions = [row[0] for row in conn.execute("SELECT version FROM schema_version")]
    assert sorted(versions) == sorted(set(versions)) and len(versions) >= 5
