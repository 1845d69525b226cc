"""kill -9 in the middle of a storm, restart on the same SQLite file: real
service processes on 127.0.0.1. The reference service loses nothing and
doubles nothing; a stand-in that answers 200 before it commits is caught."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from loadtests.harness.errors import GateError
from loadtests.harness.service_process import ServiceProcess
from scenarios.crash import run_crash_restart
from scenarios.storm import StormConfig, StormError, run_storm

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
# Short ticks of many deliveries: each kill finds several in flight, one of them
# held in flight on purpose (scenarios.crash).
CONFIG = StormConfig(events=400, storm_seconds=60, tick_seconds=2, outage_seconds=0)
ACK_EARLY = [sys.executable, "-m", "tests.scenarios.ack_early_service"]
BATCH_ACK_EARLY = [sys.executable, "-m", "tests.scenarios.ack_early_batch_service"]


def test_the_reference_service_survives_kill_9_with_nothing_lost_or_doubled(tmp_path: Path):
    with ServiceProcess(tmp_path / "licensing.db", tmp_path / "service.log") as service:
        result = run_crash_restart(service, CONFIG, kills=3)
        assert service.starts == 4  # the first start and three restarts, one database
    assert result.passed, result.examples
    assert result.kills == 3
    assert result.acknowledged == result.events >= 400
    assert result.lost == result.applied_twice == result.state_mismatches == 0
    assert result.audit_problems == result.email_problems == 0
    # Deliveries in flight at a kill got no answer, and were tried again (each kill
    # waits for one in flight: none would mean a kill landed between deliveries).
    assert result.unanswered > 0 and result.retried >= result.unanswered


def test_crash_and_an_outage_together(tmp_path: Path):
    config = StormConfig(events=200, storm_seconds=60, outage_start_seconds=10, outage_seconds=120)
    with ServiceProcess(tmp_path / "licensing.db", tmp_path / "service.log") as service:
        result = run_crash_restart(service, config, kills=2)
    assert result.passed, result.examples
    assert result.kills == 2 and result.refused_in_outage > 0


def test_a_service_that_acknowledges_before_it_commits_loses_events_at_a_kill(tmp_path: Path):
    # Without a kill the stand-in ends right (it applies each event 0.5 s after
    # answering): what the crash run finds is the crash's doing.
    calm = StormConfig(events=100, storm_seconds=30, outage_seconds=0, settle_seconds=1.0)
    with ServiceProcess(tmp_path / "calm.db", tmp_path / "calm.log", argv=ACK_EARLY) as service:
        control = run_storm(service.url, service.secrets, calm, db=service.db)
    assert control.passed, control.examples
    with ServiceProcess(tmp_path / "crash.db", tmp_path / "crash.log", argv=ACK_EARLY) as service:
        result = run_crash_restart(service, CONFIG, kills=3)
    assert not result.passed
    assert result.lost > 0
    assert any("acknowledged 2xx but not completed" in line for line in result.examples)


def test_a_group_commit_that_answers_before_its_commit_loses_events_at_a_kill(tmp_path: Path):
    # The reference service's batcher with one change: each batch is answered
    # 200, then committed 0.5 s later. Calm, it ends right; killed, it loses.
    calm = StormConfig(events=100, storm_seconds=30, outage_seconds=0, settle_seconds=1.0)
    argv = BATCH_ACK_EARLY
    with ServiceProcess(tmp_path / "calm.db", tmp_path / "calm.log", argv=argv) as service:
        control = run_storm(service.url, service.secrets, calm, db=service.db)
    assert control.passed, control.examples
    with ServiceProcess(tmp_path / "crash.db", tmp_path / "crash.log", argv=argv) as service:
        result = run_crash_restart(service, CONFIG, kills=3)
    assert not result.passed
    assert result.lost > 0
    assert any("acknowledged 2xx but not completed" in line for line in result.examples)


def test_refuses_no_kills(tmp_path: Path):
    service = ServiceProcess(tmp_path / "licensing.db", tmp_path / "service.log")
    with pytest.raises(StormError, match="kills must be at least 1"):
        run_crash_restart(service, CONFIG, kills=0)


class NeverComesBack(ServiceProcess):
    """A planted service that does not start again after a kill."""

    def restart(self) -> None:
        self.kill()
        raise GateError("the service exited at start")


def test_a_service_that_does_not_come_back_ends_the_storm_with_a_reason(tmp_path: Path):
    service = NeverComesBack(tmp_path / "licensing.db", tmp_path / "service.log")
    with service, pytest.raises(StormError, match="did not come back after kill -9 number 1"):
        run_crash_restart(service, CONFIG, kills=1)
