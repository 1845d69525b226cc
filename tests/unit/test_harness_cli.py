"""``licensing-harness`` composes every part's commands and refuses, in one line,
the commands of a part whose extra is not installed."""

from __future__ import annotations

import importlib.metadata
import re
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from licensing_harness import cli
from licensing_service import cli as service_cli

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def _help(main: Callable[[list[str]], int], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    return capsys.readouterr().out


def test_every_part_has_its_commands(capsys: pytest.CaptureFixture[str]) -> None:
    listed = set(re.findall(r"^ {4}(\w+) ", _help(cli.main, capsys), re.MULTILINE))
    assert listed == {"serve", "seed", "stripe", "gate", "rehearse", "replicas"}


def test_the_service_command_has_only_the_service(capsys: pytest.CaptureFixture[str]) -> None:
    listed = set(re.findall(r"^ {4}(\w+) ", _help(service_cli.main, capsys), re.MULTILINE))
    assert listed == {"serve", "seed"}


@pytest.mark.parametrize(
    ("argv", "hidden", "extra"),
    [
        (["stripe", "generate", "--out", "{tmp}/s.jsonl"], "faker", "fixtures"),
        (["stripe", "send", "--url", "http://127.0.0.1:9/webhook"], "aiohttp", "fixtures"),
        (["gate", "--report", "{tmp}/report"], "locust", "harness"),
        (["gate", "--report", "{tmp}/report"], "matplotlib", "harness"),
    ],
)
def test_a_missing_extra_is_one_line_naming_it(
    argv: list[str],
    hidden: str,
    extra: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(sys.modules, hidden, None)  # what `import hidden` then fails on
    code = cli.main([arg.format(tmp=tmp_path) for arg in argv])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1
    assert f"pip install 'licensing-harness[{extra}]'" in err
    assert f"missing {hidden}" in err or f", {hidden}" in err
    assert list(tmp_path.iterdir()) == []  # the command did not start


def _requirement_names(extra: str, extras: dict[str, list[str]]) -> set[str]:
    names = set()
    for requirement in extras[extra]:
        name = re.match(r"[A-Za-z0-9._-]+", requirement)
        assert name is not None
        own = re.fullmatch(r"licensing-harness\[(\w+)\]", requirement)
        names |= _requirement_names(own[1], extras) if own else {name[0].lower()}
    return names


@pytest.mark.parametrize("part", [p for p in cli.PARTS if p.extra is not None])
def test_what_a_part_checks_for_is_what_its_extra_installs(part: cli.Part) -> None:
    extras = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]
    assert part.extra is not None
    distributions = importlib.metadata.packages_distributions()
    installs = {dist.lower() for name in part.needs for dist in distributions[name]}
    assert installs == _requirement_names(part.extra, extras)
