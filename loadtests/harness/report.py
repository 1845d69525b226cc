"""What CI and people read after a gate run: a text table, JSON and JUnit XML.

Every writer takes the gate's plain data (``model.py``) and writes one file; none of
them judge anything (``verdicts.py`` does). The PNG charts are ``charts.py``.
"""

from __future__ import annotations

import json
import math
import re
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from loadtests.harness.gate_config import GateConfig
from loadtests.harness.model import (
    CheckResult,
    LatencyStats,
    LoadSummary,
    Outcome,
    Verdict,
)
from loadtests.harness.verdicts import exit_code

SUITE_NAME = "licensing-harness gate"
JSON_FORMAT = "licensing-harness-gate/1"
RESULT_WORDS = {0: "pass", 1: "fail", 2: "error"}

# --------------------------------------------------------------------------- text


def print_table(
    verdicts: Sequence[Verdict],
    file: TextIO | None = None,
    summary: LoadSummary | None = None,
) -> None:
    """The verdicts table; with a summary, the per-endpoint latency table after it."""
    out = sys.stdout if file is None else file
    out.write(format_verdicts(verdicts) + "\n")
    if summary is not None:
        out.write("\n")
        print_latency_table(summary, out)


def print_latency_table(summary: LoadSummary, file: TextIO | None = None) -> None:
    """The per-endpoint latency table alone."""
    (sys.stdout if file is None else file).write(format_latency(summary) + "\n")


def format_verdicts(verdicts: Sequence[Verdict]) -> str:
    """Aligned kind/name/expected/observed/result rows, the details of what didn't pass,
    and a last line with the overall result and exit code."""
    headers = ("kind", "name", "expected", "observed", "result")
    rows = [(v.kind, v.name, v.expected, v.observed, v.outcome.value.upper()) for v in verdicts]
    lines = [_render(headers, rows, right=set())] if rows else ["(no verdicts)"]
    lines += [
        f"  {v.outcome.value.upper()} {v.name}: {v.detail}"
        for v in verdicts
        if v.outcome is not Outcome.PASS and v.detail
    ]
    lines.append(_result_line(verdicts))
    return "\n".join(lines)


def _result_line(verdicts: Sequence[Verdict]) -> str:
    code = exit_code(verdicts)
    counts = _counts(verdicts)
    tally = ", ".join(f"{counts[o.value]} {o.value}" for o in Outcome)
    return f"gate: {RESULT_WORDS[code].upper()} ({tally}); exit code {code}"


def _counts(verdicts: Sequence[Verdict]) -> dict[str, int]:
    counter = Counter(v.outcome.value for v in verdicts)
    return {o.value: counter[o.value] for o in Outcome}


def format_latency(summary: LoadSummary) -> str:
    """Per-endpoint requests, failures and latency (ms, successes only), name order."""
    endpoints = sorted(summary.endpoints.values(), key=lambda ep: ep.name)
    corrected = any(ep.corrected is not None for ep in endpoints)
    headers = ["name", "requests", "failures", "p50", "p90", "p95", "p99", "p99.9", "max"]
    if corrected:
        headers.append("corr. p99")
    rows = []
    for ep in endpoints:
        row = [ep.name, str(ep.requests), str(ep.failures), *_latency_cells(ep.ok)]
        if corrected:
            row.append(_ms(ep.corrected.p99) if ep.corrected is not None else "-")
        rows.append(row)
    lines = [_run_line(summary)]
    if summary.aborted is not None:
        lines.append(f"stopped early: {summary.aborted}")
    lines.append(_render(headers, rows, right=set(range(1, len(headers)))) if rows else "")
    return "\n".join(line for line in lines if line)


def _run_line(summary: LoadSummary) -> str:
    line = f"load: {summary.duration_s:.1f} s; latency in ms, successful requests only"
    om = summary.open_model
    if om is not None:
        line += (
            f"; open model: {om.target_rate:g}/s asked, {om.iterations} started, "
            f"{om.late} late, {om.dropped} dropped"
        )
    return line


def _latency_cells(stats: LatencyStats | None) -> list[str]:
    if stats is None or stats.count == 0:
        return ["-"] * 6
    return [_ms(stats.value(m)) for m in ("p50", "p90", "p95", "p99", "p99.9", "max")]


def _ms(value: float) -> str:
    # HDR histograms keep 3 significant digits; print no more than they know.
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _render(headers: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> str:
    """A plain-text table: columns padded to their widest cell, numbers right-aligned."""
    columns = zip(headers, *rows, strict=False)
    widths = [max(len(cell) for cell in column) for column in columns]

    def line(cells: Sequence[str]) -> str:
        padded = (
            cell.rjust(w) if i in right else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
        )
        return "  ".join(padded).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


# --------------------------------------------------------------------------- JSON


def write_json(
    path: Path,
    config: GateConfig,
    summary: LoadSummary | None,
    checks: Sequence[CheckResult],
    verdicts: Sequence[Verdict],
    meta: dict[str, Any],
) -> None:
    """Everything the gate knew, machine-readable; the exit code is the one it returns."""
    code = exit_code(verdicts)
    document = {
        "format": JSON_FORMAT,
        "result": RESULT_WORDS[code],
        "exit_code": code,
        "counts": _counts(verdicts),
        "verdicts": [_verdict_dict(v) for v in verdicts],
        "checks": [_check_dict(c) for c in checks],
        "config": config.to_dict(),
        "summary": summary.to_dict() if summary is not None else None,
        "meta": meta,
    }
    # allow_nan=False: NaN is not JSON, and _finite has already turned it into null.
    text = json.dumps(_finite(document), indent=2, allow_nan=False, default=str)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n", encoding="utf-8")


def _verdict_dict(v: Verdict) -> dict[str, Any]:
    return {
        "kind": v.kind,
        "name": v.name,
        "outcome": v.outcome.value,
        "expected": v.expected,
        "observed": v.observed,
        "detail": v.detail,
    }


def _check_dict(c: CheckResult) -> dict[str, Any]:
    return {"name": c.name, "outcome": c.outcome.value, "detail": c.detail, "seconds": c.seconds}


def _finite(value: Any) -> Any:
    """The document with NaN and infinities as null, so every JSON parser reads it."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


# --------------------------------------------------------------------------- JUnit


def write_junit(path: Path, verdicts: Sequence[Verdict]) -> None:
    """One testsuite, one testcase per verdict (classname "threshold" or "check")."""
    counts = _counts(verdicts)
    totals = {
        "tests": str(len(verdicts)),
        "failures": str(counts[Outcome.FAIL.value]),
        "errors": str(counts[Outcome.ERROR.value]),
        "skipped": str(counts[Outcome.SKIP.value]),
    }
    # Some CI readers want <testsuites> at the root, some a <testsuite>: the wrapper
    # with one suite inside satisfies both.
    root = ET.Element("testsuites", {"name": SUITE_NAME, **totals})
    suite = ET.SubElement(root, "testsuite", {"name": SUITE_NAME, **totals})
    for verdict in verdicts:
        _testcase(suite, verdict)
    ET.indent(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def _testcase(suite: ET.Element, v: Verdict) -> None:
    case = ET.SubElement(suite, "testcase", {"classname": v.kind, "name": _xml_text(v.name)})
    seen = f"expected {v.expected}, observed {v.observed}"
    if v.outcome is Outcome.FAIL:
        child = ET.SubElement(case, "failure", {"message": _xml_text(seen)})
        child.text = _xml_text(v.detail)
    elif v.outcome is Outcome.ERROR:
        child = ET.SubElement(case, "error", {"message": _xml_text(v.detail or seen)})
        child.text = _xml_text(seen)
    elif v.outcome is Outcome.SKIP:
        ET.SubElement(case, "skipped", {"message": _xml_text(v.detail)})
    else:
        ET.SubElement(case, "system-out").text = _xml_text(_join(seen, v.detail))


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


# Characters XML 1.0 can't carry even escaped: ElementTree would write them and
# produce a file no parser accepts.
_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_text(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


__all__ = [
    "JSON_FORMAT",
    "SUITE_NAME",
    "format_latency",
    "format_verdicts",
    "print_latency_table",
    "print_table",
    "write_json",
    "write_junit",
]
