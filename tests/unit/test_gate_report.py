"""The gate's reports: text tables, JSON, JUnit XML and PNG charts."""

from __future__ import annotations

import io
import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from loadtests.harness.charts import write_charts
from loadtests.harness.gate_config import GateConfig, LoadConfig, Threshold
from loadtests.harness.model import (
    CheckResult,
    EndpointSummary,
    LatencyStats,
    LoadSummary,
    OpenModelStats,
    Outcome,
    TimelinePoint,
    Verdict,
)
from loadtests.harness.report import (
    JSON_FORMAT,
    SUITE_NAME,
    format_latency,
    format_verdicts,
    print_latency_table,
    print_table,
    write_json,
    write_junit,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def stats(p99: float, *, count: int = 1000) -> LatencyStats:
    return LatencyStats(count, p99 / 3, p99 / 4, p99 / 2, p99 / 1.5, p99, p99 * 1.2, p99 * 2)


def summary(*, corrected: bool = False, timeline: bool = True) -> LoadSummary:
    validate = EndpointSummary(
        "validate",
        ("licensing",),
        stats(4.5),
        None,
        stats(6.0) if corrected else None,
        12000,
        3,
        200.0,
    )
    webhook = EndpointSummary("webhook", ("stripe",), None, stats(30.0, count=7), None, 7, 7, 0.1)
    points = [
        TimelinePoint(s, 180 + s % 7, int(s % 11 == 0), 1.0 + s / 60, 2.0, 3.0 + (s % 5))
        for s in range(60)
    ]
    return LoadSummary(60.0, {"webhook": webhook, "validate": validate}, points if timeline else [])


VERDICTS = [
    Verdict("threshold", "validate p99 <= 10 ms", Outcome.PASS, "<= 10 ms", "4.50 ms"),
    Verdict(
        "threshold",
        "* error_rate <= 0",
        Outcome.FAIL,
        "<= 0",
        "0.0008 (10/12007)",
        "errors on webhook",
    ),
    Verdict("check", "heartbeat_expiry", Outcome.SKIP, "pass", "skip", "no test clock on --target"),
    Verdict("check", "no_grace", Outcome.ERROR, "pass", "-", "no result"),
    Verdict("check", "cache_tiers", Outcome.PASS, "pass", "pass", "tiers as configured"),
]


# --------------------------------------------------------------------------- text


def test_verdict_table_is_aligned_and_ends_with_the_result() -> None:
    text = format_verdicts(VERDICTS)
    lines = text.splitlines()
    header, rule, rows = lines[0], lines[1], lines[2 : 2 + len(VERDICTS)]
    column = header.index("result")
    for row, verdict in zip(rows, VERDICTS, strict=True):
        assert row[column:] == verdict.outcome.value.upper()
        assert row[header.index("observed") :].startswith(verdict.observed)
    assert set(rule.replace(" ", "")) == {"-"}
    # What didn't pass is explained under the table; passes stay quiet.
    assert "  FAIL * error_rate <= 0: errors on webhook" in lines
    assert "  SKIP heartbeat_expiry: no test clock on --target" in lines
    assert not any("tiers as configured" in line for line in lines)
    assert lines[-1] == "gate: FAIL (2 pass, 1 fail, 1 skip, 1 error); exit code 1"


def test_no_verdicts_is_said_plainly() -> None:
    assert format_verdicts([]).splitlines() == [
        "(no verdicts)",
        "gate: ERROR (0 pass, 0 fail, 0 skip, 0 error); exit code 2",
    ]


def test_latency_table_lists_endpoints_in_name_order() -> None:
    text = format_latency(summary())
    lines = text.splitlines()
    assert lines[0].startswith("load: 60.0 s")
    assert lines[1].split() == [
        "name",
        "requests",
        "failures",
        "p50",
        "p90",
        "p95",
        "p99",
        "p99.9",
        "max",
    ]
    assert lines[3].split() == [
        "validate",
        "12000",
        "3",
        "1.12",
        "2.25",
        "3.00",
        "4.50",
        "5.40",
        "9.00",
    ]
    # No successes: no latency to show, rather than zeros.
    assert lines[4].split() == ["webhook", "7", "7", "-", "-", "-", "-", "-", "-"]
    assert "corr." not in text


def test_latency_table_shows_corrected_p99_open_model_and_abort_when_present() -> None:
    base = summary(corrected=True)
    extra = LoadSummary(
        base.duration_s,
        base.endpoints,
        base.timeline,
        OpenModelStats(200.0, 11950, 12, 50),
        "validate p99 <= 10 ms: observed 50.0 ms after 12s",
    )
    lines = format_latency(extra).splitlines()
    assert "open model: 200/s asked, 11950 started, 12 late, 50 dropped" in lines[0]
    assert lines[1] == "stopped early: validate p99 <= 10 ms: observed 50.0 ms after 12s"
    assert lines[2].split()[-2:] == ["corr.", "p99"]
    assert lines[4].split()[-1] == "6.00"
    assert lines[5].split()[-1] == "-"


def test_print_table_writes_verdicts_then_latency() -> None:
    out = io.StringIO()
    print_table(VERDICTS, out, summary())
    text = out.getvalue()
    assert text.index("expected") < text.index("p99.9")
    alone = io.StringIO()
    print_latency_table(summary(), alone)
    assert alone.getvalue() == format_latency(summary()) + "\n"


# --------------------------------------------------------------------------- JSON


def config() -> GateConfig:
    return GateConfig(LoadConfig(), (Threshold("validate", "p99", max=10.0),), {"no_grace": True})


def test_json_holds_everything_and_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "out" / "summary.json"
    checks = [CheckResult("no_grace", Outcome.PASS, "revoked at once", 1.5)]
    write_json(path, config(), summary(), checks, VERDICTS, {"target": "x", "dir": tmp_path})
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["format"] == JSON_FORMAT
    assert (data["result"], data["exit_code"]) == ("fail", 1)
    assert data["counts"] == {"pass": 2, "fail": 1, "skip": 1, "error": 1}
    assert [v["outcome"] for v in data["verdicts"]] == ["pass", "fail", "skip", "error", "pass"]
    assert data["checks"] == [
        {"name": "no_grace", "outcome": "pass", "detail": "revoked at once", "seconds": 1.5}
    ]
    assert data["config"]["thresholds"][0] == {
        "select": "validate",
        "metric": "p99",
        "max": 10.0,
        "min": None,
    }
    assert data["config"]["load"]["duration_s"] == 60
    assert LoadSummary.from_dict(data["summary"]) == summary()
    assert data["meta"] == {"target": "x", "dir": str(tmp_path)}


def test_json_without_a_summary_and_with_nan_stays_valid_json(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    write_json(path, config(), None, [], [], {"odd": math.nan, "big": [math.inf]})
    text = path.read_text(encoding="utf-8")
    assert "NaN" not in text and "Infinity" not in text
    data = json.loads(text)
    assert data["summary"] is None and data["exit_code"] == 2
    assert data["meta"] == {"odd": None, "big": [None]}


# --------------------------------------------------------------------------- JUnit


def test_junit_has_one_case_per_verdict_and_the_right_counts(tmp_path: Path) -> None:
    path = tmp_path / "junit.xml"
    write_junit(path, VERDICTS)
    root = ET.parse(path).getroot()  # noqa: S314 - our own file
    suite = root.find("testsuite")
    assert suite is not None and suite.get("name") == SUITE_NAME
    for element in (root, suite):
        assert element.get("tests") == "5"
        assert element.get("failures") == "1"
        assert element.get("errors") == "1"
        assert element.get("skipped") == "1"
    cases = suite.findall("testcase")
    assert [c.get("classname") for c in cases] == [
        "threshold",
        "threshold",
        "check",
        "check",
        "check",
    ]
    assert [c.get("name") for c in cases] == [v.name for v in VERDICTS]
    failure = cases[1].find("failure")
    assert failure is not None
    assert failure.get("message") == "expected <= 0, observed 0.0008 (10/12007)"
    assert failure.text == "errors on webhook"
    skipped = cases[2].find("skipped")
    assert skipped is not None and skipped.get("message") == "no test clock on --target"
    error = cases[3].find("error")
    assert error is not None and error.get("message") == "no result"
    assert len(suite.findall("testcase/failure")) == 1
    assert len(suite.findall("testcase/error")) == 1
    assert len(suite.findall("testcase/skipped")) == 1


def test_junit_stays_well_formed_with_awkward_text(tmp_path: Path) -> None:
    path = tmp_path / "junit.xml"
    nasty = 'a <b> & "c" \x00\x1b[31m d'
    write_junit(path, [Verdict("check", nasty, Outcome.FAIL, "pass", "fail", nasty)])
    case = ET.parse(path).getroot().find("testsuite/testcase")  # noqa: S314 - our own file
    assert case is not None
    assert case.get("name") == 'a <b> & "c" \ufffd\ufffd[31m d'


# --------------------------------------------------------------------------- charts


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 5000  # an empty canvas is smaller; this one has axes, lines, text


def test_charts_are_pngs(tmp_path: Path) -> None:
    paths = write_charts(tmp_path / "charts", summary())
    assert [p.name for p in paths] == ["latency.png", "throughput.png"]
    for path in paths:
        assert_png(path)


@pytest.mark.parametrize("empty", [summary(timeline=False), None])
def test_charts_without_a_timeline_say_no_data(tmp_path: Path, empty: LoadSummary | None) -> None:
    paths = write_charts(tmp_path, empty)
    assert [p.name for p in paths] == ["latency.png", "throughput.png"]
    for path in paths:
        assert_png(path)


def test_charts_cope_with_a_single_second_without_successes(tmp_path: Path) -> None:
    lonely = LoadSummary(1.0, {}, [TimelinePoint(0, 5, 5, None, None, None)], aborted="x")
    for path in write_charts(tmp_path, lonely):
        assert_png(path)
