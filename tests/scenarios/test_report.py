"""The report: summary.json, junit.xml, the chart, the recordings; exit codes like the gate."""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path

from scenarios.expectations import Outcome, Verdict
from scenarios.recording import Recording
from scenarios.report import overall_exit, print_verdicts, write_report
from scenarios.runner import ScenarioResult
from tests.scenarios.planted import db_outage


def result(name: str, *outcomes: Outcome, skipped: str | None = None) -> ScenarioResult:
    verdicts = tuple(Verdict(f"v{n}", o, "x", "y", "why") for n, o in enumerate(outcomes))
    rec = db_outage() if skipped is None else None
    return ScenarioResult(name, f"{name}.toml", True, verdicts, skipped=skipped, recording=rec)


def test_exit_codes() -> None:
    passed = result("a", Outcome.PASS)
    failed = result("b", Outcome.PASS, Outcome.FAIL)
    unknown = result("c", Outcome.ERROR)
    skipped = result("d", skipped="needs faults")
    assert overall_exit([passed, skipped]) == 0
    assert overall_exit([passed, failed, unknown]) == 1
    assert overall_exit([passed, unknown]) == 2
    assert overall_exit([skipped]) == 2  # nothing judged is no pass


def test_report_files(tmp_path: Path) -> None:
    results = [result("db-outage", Outcome.PASS, Outcome.FAIL), result("x", skipped="needs faults")]
    write_report(tmp_path, results)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["result"] == "fail" and summary["exit_code"] == 1
    first, second = summary["scenarios"]
    assert first["counts"]["answers"] == len(db_outage().answers)
    assert second["result"] == "skip" and second["skipped"] == "needs faults"
    root = ET.parse(tmp_path / "junit.xml").getroot()
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert suites["db-outage"].get("failures") == "1"
    assert suites["x"].get("skipped") == "1"
    assert (tmp_path / "db-outage.png").read_bytes()[:4] == b"\x89PNG"
    again = Recording.load(tmp_path / "db-outage.recording.json")
    assert again == db_outage()


def test_verdict_lines() -> None:
    out = io.StringIO()
    print_verdicts(result("db-outage", Outcome.PASS, Outcome.FAIL), out)
    lines = out.getvalue().splitlines()
    assert lines[0] == "  PASS  v0: expected x; observed y"
    assert lines[1] == "  FAIL  v1: expected x; observed y (why)"
    assert lines[2].startswith("db-outage (fast): FAIL (1 pass, 1 fail, 0 error)")
