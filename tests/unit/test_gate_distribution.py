"""The distributed gate's pure parts: the shares, the bounded wait for workers (on a
moved clock), the workers' verdict and the options' consistency."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from licensing_harness import cli
from loadtests.harness.cluster import Distribution, wait_for_workers
from loadtests.harness.errors import GateError
from loadtests.harness.model import Outcome, WorkerRoll
from loadtests.harness.shares import split_lines, split_stream
from loadtests.harness.verdicts import judge_workers


def _delivery(event_id: str, duplicate: bool = False) -> str:
    record = {"kind": "delivery", "event": {"id": event_id}, "duplicate": duplicate}
    return json.dumps(record)


# ------------------------------------------------------------------ shares


def test_every_license_goes_to_exactly_one_worker_with_the_mix_kept() -> None:
    lines = [f'{{"email": "c{n}@example.test"}}' for n in range(10)] + ["", "  "]
    shares = split_lines(lines, 3)
    assert [len(s) for s in shares] == [4, 3, 3]
    dealt = [line for share in shares for line in share]
    assert sorted(dealt) == sorted(lines[:10])  # each once, blanks dropped
    # Dealt round-robin: each share holds early and late licenses alike.
    assert shares[0] == [lines[0], lines[3], lines[6], lines[9]]


def test_every_event_with_its_duplicates_goes_to_one_worker() -> None:
    meta = json.dumps({"kind": "meta", "format": 1})
    events = [f"evt_{n}" for n in range(40)]
    lines = [meta] + [_delivery(e) for e in events] + [_delivery(e, True) for e in events]
    shares = split_stream(lines, 2)
    owner: dict[str, int] = {}
    for index, share in enumerate(shares):
        assert share[0] == meta  # each share is a readable stream
        for line in share[1:]:
            event_id = json.loads(line)["event"]["id"]
            assert owner.setdefault(event_id, index) == index, event_id
    assert sorted(owner) == sorted(events)
    assert sum(len(s) - 1 for s in shares) == len(lines) - 1
    assert all(len(s) > 1 for s in shares)  # the hash spreads them


def test_one_share_is_the_whole_input() -> None:
    lines = ["a", "b", "c"]
    assert split_lines(lines, 1) == [lines]
    with pytest.raises(ValueError, match="at least 1"):
        split_lines(lines, 0)


# ------------------------------------------------------------------ the wait


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_a_worker_that_never_comes_ends_the_wait_at_its_bound_with_the_command_to_run() -> None:
    clock, out = _Clock(), io.StringIO()
    rolls = iter([None, *[WorkerRoll(connected=1, expected=2)] * 1000])
    with pytest.raises(GateError) as refused:
        wait_for_workers(
            lambda: next(rolls),
            lambda: None,
            expected=2,
            wait_s=20,
            address="127.0.0.1:5557",
            out=out,
            clock=clock,
            sleep=clock.sleep,
        )
    assert clock.now - 1000.0 == pytest.approx(20.0)  # bounded: not a moment past the wait
    message = str(refused.value)
    assert "1 of 2 Locust workers connected" in message
    assert "--worker --master-host" in message and "--master-port 5557" in message
    assert "workers: 1/2 connected (50%)" in out.getvalue()  # the progress line


def test_the_wait_ends_when_the_master_starts_the_load() -> None:
    clock = _Clock()
    states = iter(["ready", "ready", "spawning"])

    def roll() -> WorkerRoll:
        return WorkerRoll(state=next(states), connected=2, expected=2)

    wait_for_workers(
        roll,
        lambda: None,
        expected=2,
        wait_s=20,
        address="a:1",
        out=io.StringIO(),
        clock=clock,
        sleep=clock.sleep,
    )
    assert clock.now - 1000.0 < 1.0


def test_a_master_that_dies_while_waiting_is_reported_at_once() -> None:
    clock = _Clock()
    with pytest.raises(GateError, match="the Locust master exited"):
        wait_for_workers(
            lambda: None,
            lambda: "the Locust master exited (code 1)",
            expected=1,
            wait_s=60,
            address="a:1",
            out=io.StringIO(),
            clock=clock,
            sleep=clock.sleep,
        )
    assert clock.now == 1000.0


# ------------------------------------------------------------------ the verdict


def test_workers_all_there_from_start_to_end_pass() -> None:
    verdict = judge_workers(2, WorkerRoll(state="stopped", expected=2, at_start=2))
    assert verdict.outcome is Outcome.PASS
    assert verdict.observed == "2 at start, 0 lost, 0 late"


@pytest.mark.parametrize(
    ("roll", "said"),
    [
        (WorkerRoll(at_start=2, lost=1), "1 lost during the run"),
        (WorkerRoll(at_start=2, late=1), "joined during the run without a share"),
        (WorkerRoll(at_start=1), "started with 1 of 2 workers"),
        (None, "no word from the master"),
    ],
)
def test_a_lost_late_or_missing_worker_makes_the_run_inconclusive(
    roll: WorkerRoll | None, said: str
) -> None:
    verdict = judge_workers(2, roll)
    assert verdict.outcome is Outcome.ERROR
    assert said in verdict.detail


# ------------------------------------------------------------------ the options


def test_distribution_options_are_checked() -> None:
    assert Distribution().distributed is False
    assert Distribution(local_workers=2).expected == 2
    assert Distribution(local_workers=2).problems() == []
    assert Distribution(master=True, expect_workers=3, local_workers=1).problems() == []
    assert [o for o, _ in Distribution(expect_workers=2).problems()] == ["--expect-workers"]
    assert [o for o, _ in Distribution(master=True).problems()] == ["--expect-workers"]
    fewer = Distribution(master=True, expect_workers=1, local_workers=2).problems()
    assert fewer == [("--expect-workers", "1 is fewer than --workers 2")]
    assert [o for o, _ in Distribution(local_workers=1, wait_s=0).problems()] == [
        "--expect-workers-wait"
    ]


# ------------------------------------------------------------------ the command line


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--worker"], "--worker needs --master-host H"),
        (["--worker", "--master-host", "h", "--workers", "2"], "no --master or --workers"),
        (["--master-host", "h"], "--master-host is for --worker"),
        (["--workers", "2", "--expect-workers-wait", "soon"], "--expect-workers-wait"),
        (["--expect-workers", "2"], "--expect-workers: needs --master"),
        (["--workers", "-1"], "--workers: must be at least 1"),
    ],
)
def test_inconsistent_distribution_options_exit_2_before_anything_starts(
    argv: list[str], said: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = cli.main(["gate", "--report", str(tmp_path / "r"), *argv])
    assert code == 2
    printed = capsys.readouterr()
    assert said in printed.out + printed.err
    assert not (tmp_path / "r").exists()  # refused before any run
