"""``python -m scenarios.storm_cli``: starts the service, shows progress without
carriage returns off a terminal, prints the result as JSON, exits 0 on a pass."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scenarios.storm_cli import main

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.mark.parametrize("kind", ["storm", "crash"])
def test_a_small_run_passes_and_reports(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    args = [kind, "--events", "60", "--kills", "1", "--outage-seconds", "30"]
    assert main([*args, "--work", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert result["passed"] and result["lost"] == result["applied_twice"] == 0
    assert result["kills"] == (1 if kind == "crash" else 0)
    assert result["outage_windows"] == [[120.0, 150.0]]
    assert isinstance(result["cpu_steal_pct"], float)
    assert (tmp_path / "licensing.db").exists()
    assert "deliveries acknowledged" in err and "\r" not in err
