"""`licensing-harness stripe generate | send | replay`, as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import Served, run_cli

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SECRET = "whsec_e2e_cli"


def _env() -> dict[str, str]:
    return {**os.environ, "STRIPE_WEBHOOK_SECRET": SECRET}


def test_generate_send_and_replay_reproduce_a_run(
    serve: Callable[..., Served], tmp_path: Path
) -> None:
    stream = tmp_path / "stream.jsonl"
    generated = run_cli(
        "stripe",
        "generate",
        "--customers",
        "30",
        "--months",
        "6",
        "--seed",
        "5",
        "--shuffle",
        "full",
        "--fail-first",
        "0.05",
        "--forgeries",
        "0.03",
        "--out",
        str(stream),
    )
    assert generated.returncode == 0, generated.stderr
    meta = json.loads(stream.read_text().splitlines()[0])
    assert (meta["kind"], meta["customers"], meta["seed"]) == ("meta", 30, 5)
    oracle = json.loads((tmp_path / "stream.oracle.json").read_text())
    assert len(oracle) == 30

    first = serve("--test-clock", extra_env={"STRIPE_WEBHOOK_SECRET": SECRET})
    recording = tmp_path / "run.jsonl"
    sent = subprocess_send(first.url, stream, recording, "--concurrency", "1")
    assert sent.returncode == 0, sent.stdout + sent.stderr
    summary = json.loads(sent.stdout)
    assert summary["gave_up"] == 0 and summary["unexpected"] == 0
    assert summary["outcomes"]["WEBHOOK_SIGNATURE_INVALID"] > 0  # the forgeries were refused
    assert summary["outcomes"]["WEBHOOK_HANDLER_FAILED"] > 0  # the failed first deliveries
    # Progress without a terminal: plain lines, no carriage-return frames.
    assert "sending: " in sent.stderr and "\r" not in sent.stderr

    second = serve("--test-clock", extra_env={"STRIPE_WEBHOOK_SECRET": SECRET})
    replayed = run_cli(
        "stripe",
        "replay",
        "--url",
        second.url + "/webhook",
        "--stream",
        str(stream),
        "--recording",
        str(recording),
        "--json",
        env=_env(),
    )
    assert replayed.returncode == 0, replayed.stderr[-2000:]
    assert json.loads(replayed.stdout)["differences"] == 0

    # Against the first server again every event is a duplicate: the replay says so.
    again = run_cli(
        "stripe",
        "replay",
        "--url",
        first.url + "/webhook",
        "--stream",
        str(stream),
        "--recording",
        str(recording),
        "--json",
        env=_env(),
    )
    assert again.returncode == 1
    assert "replayed 200 duplicate" in again.stderr


def subprocess_send(
    url: str, stream: Path, record: Path, *flags: str
) -> subprocess.CompletedProcess[str]:
    return run_cli(
        "stripe",
        "send",
        "--url",
        url + "/webhook",
        "--stream",
        str(stream),
        "--record",
        str(record),
        "--retry-base",
        "0.02",
        "--json",
        *flags,
        env=_env(),
    )


def test_bad_input_is_refused_with_a_reason(tmp_path: Path) -> None:
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"kind": "meta", "format": 1}\n{"kind": "delivery", "event": \n')
    result = run_cli(
        "stripe",
        "send",
        "--url",
        "http://127.0.0.1:9/webhook",
        "--stream",
        str(broken),
        env=_env(),
    )
    assert result.returncode == 2
    assert "broken.jsonl:2" in result.stderr and "not JSON" in result.stderr

    remote = run_cli("stripe", "send", "--url", "http://192.0.2.1/webhook", env=_env())
    assert remote.returncode == 2 and "--allow-remote" in remote.stderr

    env = {k: v for k, v in os.environ.items() if k != "STRIPE_WEBHOOK_SECRET"}
    unsigned = run_cli("stripe", "send", "--url", "http://127.0.0.1:9/webhook", env=env)
    assert unsigned.returncode == 2 and "secret" in unsigned.stderr

    bad_ratio = run_cli("stripe", "generate", "--duplicates", "1.5", "--out", str(broken))
    assert bad_ratio.returncode == 2 and "between 0 and 1" in bad_ratio.stderr


def test_serve_with_a_test_clock_creates_the_database_directory(
    serve: Callable[..., Served], tmp_path: Path
) -> None:
    """Found by the README's worked example: the clock file came before the directory."""
    db = tmp_path / "not" / "yet" / "there.db"
    served = serve("--test-clock", "--db", str(db))
    assert db.exists() and db.with_name("there.db.test-clock").exists()
    assert served.process.poll() is None
