"""``seed --inactive-ratio R`` makes exactly round(N * R) customers inactive."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from licensing_service.cli import inactive_indices, main


def test_half_of_twelve_is_exactly_six() -> None:
    for seed in range(50):
        chosen = inactive_indices(random.Random(seed), 12, 0.5)
        assert len(chosen) == 6
        assert chosen <= set(range(12))


def test_the_same_seed_chooses_the_same_customers() -> None:
    assert inactive_indices(random.Random(7), 100, 0.3) == inactive_indices(
        random.Random(7), 100, 0.3
    )


def test_different_seeds_choose_differently() -> None:
    choices = {frozenset(inactive_indices(random.Random(seed), 12, 0.5)) for seed in range(10)}
    assert len(choices) > 1


@pytest.mark.parametrize(("ratio", "expected"), [(0.0, set()), (1.0, set(range(12)))])
def test_the_edges_take_none_or_all(ratio: float, expected: set[int]) -> None:
    assert inactive_indices(random.Random(1), 12, ratio) == expected


@pytest.mark.parametrize(("customers", "ratio", "count"), [(10, 0.25, 2), (3, 0.5, 2), (1, 0.4, 0)])
def test_the_count_is_rounded(customers: int, ratio: float, count: int) -> None:
    assert (
        len(inactive_indices(random.Random(1), customers, ratio))
        == count
        == round(customers * ratio)
    )


def _statuses(tmp_path: Path, name: str, seed: int) -> list[str]:
    out = tmp_path / f"{name}.jsonl"
    argv = ["seed", "--db", str(tmp_path / f"{name}.db"), "--customers", "12"]
    assert main([*argv, "--inactive-ratio", "0.5", "--seed", str(seed), "--out", str(out)]) == 0
    return [json.loads(line)["status"] for line in out.read_text().splitlines()]


def test_the_seed_command_writes_six_of_each(tmp_path: Path) -> None:
    first = _statuses(tmp_path, "a", seed=3)
    assert first.count("inactive") == first.count("active") == 6
    assert _statuses(tmp_path, "b", seed=3) == first
