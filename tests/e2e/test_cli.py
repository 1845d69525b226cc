"""The console script as a user runs it: serve, seed, refusals, logs."""

import json
import os
from pathlib import Path

import httpx

from licensing_service.contract import routes
from tests.e2e.conftest import Served, run_cli

pytestmark = __import__("pytest").mark.e2e


def test_seed_then_validate_every_seeded_customer(serve, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server: Served = serve()
    out = tmp_path / "creds.jsonl"
    seeded = run_cli(
        "seed",
        "--db",
        str(server.db),
        "--customers",
        "40",
        "--inactive-ratio",
        "0.25",
        "--seed",
        "7",
        "--out",
        str(out),
    )
    assert seeded.returncode == 0, seeded.stderr
    # Progress without a terminal: plain lines, no carriage-return frames.
    assert "seeding: 40/40" in seeded.stderr and "\r" not in seeded.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 40
    assert {"email", "token", "customer_id", "status"} <= rows[0].keys()
    statuses = {r["status"] for r in rows}
    assert statuses == {"active", "inactive"}
    with httpx.Client(base_url=server.url) as client:
        for row in rows:
            body = {
                "operation": "validate",
                "credentials": {"email": row["email"], "token": row["token"]},
            }
            response = client.post(routes.VALIDATE_UNIFIED, json=body)
            assert response.status_code == (200 if row["status"] == "active" else 403)


def test_seed_is_reproducible_in_statuses(tmp_path: Path) -> None:
    outs = []
    for n in (1, 2):
        out = tmp_path / f"c{n}.jsonl"
        result = run_cli(
            "seed",
            "--db",
            str(tmp_path / f"s{n}.db"),
            "--customers",
            "30",
            "--inactive-ratio",
            "0.5",
            "--seed",
            "3",
            "--out",
            str(out),
        )
        assert result.returncode == 0, result.stderr
        outs.append([json.loads(line)["status"] for line in out.read_text().splitlines()])
    assert outs[0] == outs[1]


def test_bad_seed_arguments_are_refused(tmp_path: Path) -> None:
    result = run_cli(
        "seed",
        "--db",
        str(tmp_path / "x.db"),
        "--customers",
        "0",
        "--out",
        str(tmp_path / "o.jsonl"),
    )
    assert result.returncode == 2
    assert "--customers" in result.stderr


def test_test_clock_moves_a_live_server(serve) -> None:  # type: ignore[no-untyped-def]
    server: Served = serve("--test-clock")
    with httpx.Client(base_url=server.url) as client:
        before = client.get(routes.HARNESS_CLOCK).json()
        after = client.post(routes.HARNESS_CLOCK, json={"advance_seconds": 7200}).json()
        assert after["offset_seconds"] - before["offset_seconds"] == 7200


def test_without_test_clock_the_harness_is_absent(serve) -> None:  # type: ignore[no-untyped-def]
    server: Served = serve()
    assert httpx.get(server.url + routes.HARNESS_CLOCK).status_code == 404


def test_production_refuses_test_clock(tmp_path: Path) -> None:
    env = {**os.environ, "LH_ENVIRONMENT": "production"}
    result = run_cli("serve", "--test-clock", "--db", str(tmp_path / "p.db"), env=env)
    assert result.returncode == 2
    assert "test-clock" in result.stderr


def test_production_refuses_wildcard_cors(tmp_path: Path) -> None:
    env = {**os.environ, "LH_ENVIRONMENT": "production", "LH_CORS_ORIGINS": "*"}
    result = run_cli("serve", "--db", str(tmp_path / "p.db"), env=env)
    assert result.returncode == 2
    assert "CORS" in result.stderr


def test_no_secret_reaches_the_log(serve, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server: Served = serve()
    out = tmp_path / "creds.jsonl"
    assert (
        run_cli("seed", "--db", str(server.db), "--customers", "3", "--out", str(out)).returncode
        == 0
    )
    row = json.loads(out.read_text().splitlines()[0])
    raw_fingerprint = "RAW-SERIAL-0042-do-not-log"
    with httpx.Client(base_url=server.url) as client:
        for token in (row["token"], "POSPAL-WRNG-WRNG-WRNG-WRNG"):
            client.post(
                routes.VALIDATE_UNIFIED,
                json={
                    "operation": "validate",
                    "credentials": {"email": row["email"], "token": token},
                    "device": {"machineFingerprint": raw_fingerprint},
                },
            )
        client.post(
            routes.VALIDATE_UNIFIED,
            content=b'{"operation": "validate", "token": "' + row["token"].encode(),
        )
    server.process.terminate()
    server.process.wait(timeout=15)
    text = server.log_text()
    assert "Application startup complete" in text  # the log is really captured
    assert row["token"] not in text
    assert raw_fingerprint not in text
