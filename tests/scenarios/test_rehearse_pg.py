"""The rehearsals on PostgreSQL (replica-kill, db-unreachable, db-blackhole):
skipped with the reason where no server answers (an error where one is
required), and each FAILS against a planted set-up lacking the control it
rehearses. Their passing fast runs are in test_rehearse_e2e.py (every shipped
rehearsal), and so are db-unreachable and db-blackhole against a breaker that
never opens (beside db-outage)."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from loadtests.harness.processes import free_port
from scenarios.cli import shipped
from scenarios.expectations import Outcome
from scenarios.model import load_rehearsal
from scenarios.proxy import FaultProxy
from scenarios.runner import RunOptions, run_scenario
from tests import pg

CLI = [sys.executable, "-m", "licensing_harness", "rehearse"]
PG_REHEARSALS = ("db-unreachable", "db-blackhole", "replica-kill")
pytestmark = [pytest.mark.e2e]


def nobody_listens() -> str:
    # With a password: it must never be printed.
    return f"postgresql://postgres:s3cret@127.0.0.1:{free_port()}/postgres"


def test_skipped_with_the_reason_where_no_postgresql_answers(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "LH_TEST_PG_REQUIRED"}
    done = subprocess.run(
        [*CLI, *PG_REHEARSALS, "--fast", "--pg", nobody_listens(), "--report", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    for name in PG_REHEARSALS:
        assert (
            f"{name} (fast): SKIP: needs postgresql: no PostgreSQL at postgresql://postgres:***@"
            in (done.stdout)
        ), done.stdout + done.stderr
    assert "s3cret" not in done.stdout + done.stderr + (tmp_path / "summary.json").read_text()
    assert done.returncode == 2  # nothing judged is no pass
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [s["result"] for s in summary["scenarios"]] == ["skip"] * len(PG_REHEARSALS)


def test_an_error_not_a_skip_where_postgresql_is_required(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LH_TEST_PG_REQUIRED", "1")
    reh = load_rehearsal(shipped()["db-unreachable"])
    result = run_scenario(
        reh, RunOptions(fast=True, pg=nobody_listens(), out=io.StringIO(), live=False)
    )
    assert result.skipped is None
    (verdict,) = result.verdicts
    assert verdict.outcome is Outcome.ERROR and "no PostgreSQL at" in verdict.detail
    assert "s3cret" not in verdict.detail
    assert result.exit_code == 2


@pytest.fixture
def postgresql() -> None:
    reason = pg.reachable()
    if reason is not None:
        if os.environ.get("LH_TEST_PG_REQUIRED") == "1":
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.mark.slow
@pytest.mark.usefixtures("postgresql")
def test_replica_kill_fails_when_the_address_does_not_pass_a_dead_replica_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Planted: the address in front of the replicas without its failover (a
    # connection the dead replica refuses is not offered to the next one).
    async def no_failover(self: FaultProxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        index = self._next
        self._next = (index + 1) % len(self.upstreams)
        try:
            opened = await asyncio.open_connection(*self.upstreams[index])
        except OSError:
            self._refused[index] += 1
            raise
        self._spread[index] += 1
        return opened

    monkeypatch.setattr(FaultProxy, "_connect", no_failover)
    reh = load_rehearsal(shipped()["replica-kill"])
    result = run_scenario(reh, RunOptions(fast=True, out=io.StringIO(), live=False))
    verdicts = {v.name: v for v in result.verdicts}
    assert verdicts["replica_failover"].outcome is Outcome.FAIL, verdicts["replica_failover"]
    assert "fresh clients after the kill answered" in verdicts["replica_failover"].detail
    # What the storm's own retries keep true still holds.
    assert verdicts["storm_exactly_once"].outcome is Outcome.PASS
    assert result.exit_code == 1
