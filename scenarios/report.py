"""A rehearsal run's report: ``summary.json``, ``junit.xml``, a chart and the
recording of each scenario (``<name>.png``, ``<name>.recording.json``), and the
verdict lines printed on the terminal."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from scenarios.chart import write_chart
from scenarios.expectations import Outcome
from scenarios.runner import ScenarioResult

SUMMARY = "summary.json"
JUNIT = "junit.xml"


def overall_exit(results: Sequence[ScenarioResult]) -> int:
    """As the gate: 1 if any failed; 2 if any could not be judged, or none was; else 0."""
    codes = [r.exit_code for r in results if r.skipped is None]
    if 1 in codes:
        return 1
    if 2 in codes or not codes:
        return 2
    return 0


def print_verdicts(result: ScenarioResult, out: TextIO) -> None:
    variant = " (fast)" if result.fast else ""
    if result.skipped is not None:
        print(f"{result.name}{variant}: SKIP: {result.skipped}", file=out)
        return
    for v in result.verdicts:
        line = (
            f"  {v.outcome.value.upper():5} {v.name}: expected {v.expected}; observed {v.observed}"
        )
        if v.detail and v.outcome is not Outcome.PASS:
            line += f" ({v.detail})"
        print(line, file=out)
    counts = {o: sum(1 for v in result.verdicts if v.outcome is o) for o in Outcome}
    print(
        f"{result.name}{variant}: {result.outcome.upper()} ({counts[Outcome.PASS]} pass,"
        f" {counts[Outcome.FAIL]} fail, {counts[Outcome.ERROR]} error) in"
        f" {result.duration_s:.1f}s; exit code {result.exit_code}",
        file=out,
    )


def write_report(directory: Path, results: Sequence[ScenarioResult]) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for r in results:
        if r.recording is not None:
            path = directory / f"{r.name}.recording.json"
            r.recording.save(path)
            written.append(path)
            written.append(write_chart(directory / f"{r.name}.png", r.name, r.recording))
    summary = directory / SUMMARY
    summary.write_text(json.dumps(_summary(results), indent=2) + "\n", encoding="utf-8")
    junit = directory / JUNIT
    write_junit(junit, results)
    return [summary, junit, *written]


def _summary(results: Sequence[ScenarioResult]) -> dict[str, Any]:
    code = overall_exit(results)
    return {
        "result": {0: "pass", 1: "fail"}.get(code, "error"),
        "exit_code": code,
        "scenarios": [_scenario(r) for r in results],
    }


def _scenario(r: ScenarioResult) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": r.name,
        "source": r.source,
        "fast": r.fast,
        "result": r.outcome,
        "exit_code": r.exit_code,
        "duration_s": round(r.duration_s, 3),
        "skipped": r.skipped,
        "interrupted": r.interrupted,
        "verdicts": [v.to_dict() for v in r.verdicts],
    }
    rec = r.recording
    if rec is not None:
        body["counts"] = {
            "answers": len(rec.answers),
            "no_answer": sum(1 for a in rec.answers if a.status is None),
            "server_errors": sum(
                1 for a in rec.answers if a.status is not None and a.status >= 500
            ),
            "degraded": sum(1 for a in rec.answers if a.degraded),
        }
        body["fault_windows"] = [
            {"start": w.start, "end": w.end, "names": list(w.names)} for w in rec.faults
        ]
        body["steps"] = [
            {"phase": s.phase, "label": s.label, "start": s.start, "ok": s.ok, "detail": s.detail}
            for s in rec.steps
        ]
        body["params"] = rec.params
        body["chart"] = f"{r.name}.png"
        body["recording"] = f"{r.name}.recording.json"
    return body


def write_junit(path: Path, results: Sequence[ScenarioResult]) -> None:
    suites = ET.Element("testsuites", name="rehearse")
    for r in results:
        cases = r.verdicts or ()
        failures = sum(1 for v in cases if v.outcome is Outcome.FAIL)
        errors = sum(1 for v in cases if v.outcome is Outcome.ERROR)
        suite = ET.SubElement(
            suites,
            "testsuite",
            name=r.name,
            tests=str(max(1, len(cases))),
            failures=str(failures),
            errors=str(errors),
            skipped="1" if r.skipped is not None else "0",
            time=f"{r.duration_s:.3f}",
        )
        if r.skipped is not None:
            case = ET.SubElement(suite, "testcase", classname=f"rehearse.{r.name}", name="scenario")
            ET.SubElement(case, "skipped", message=r.skipped)
            continue
        for v in cases:
            case = ET.SubElement(suite, "testcase", classname=f"rehearse.{r.name}", name=v.name)
            text = f"expected {v.expected}; observed {v.observed}" + (
                f"; {v.detail}" if v.detail else ""
            )
            if v.outcome is Outcome.FAIL:
                ET.SubElement(case, "failure", message=text)
            elif v.outcome is Outcome.ERROR:
                ET.SubElement(case, "error", message=text)
            else:
                ET.SubElement(case, "system-out").text = text
    ET.ElementTree(suites).write(path, encoding="utf-8", xml_declaration=True)


__all__ = ["JUNIT", "SUMMARY", "overall_exit", "print_verdicts", "write_junit", "write_report"]
