"""schemathesis against the service's own ``/openapi.json``, as a subprocess
of its CLI (``st run``): its checks, its report, and the service's own count
of what it answered (``/metrics``), so "zero 5xx" does not rest on the
fuzzer's word alone."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from licensing_service.contract import routes
from scenarios.hostile_counts import answered_since, status_counts

CHECKS = ("not_a_server_error", "status_code_conformance", "response_schema_conformance")
# Routes that break the service on purpose (a failing database, a failing
# webhook handler): fuzzing them would "find" the outage they inject.
# The two literals are the routes /__harness__/faults replaces (issue 10):
# named here, not through contract.routes, which drops them with the merge.
FAULT_ROUTES = (routes.HARNESS_FAULTS,)
_GENERATED = re.compile(r"(\d+) generated")


@dataclass(frozen=True)
class SchemaRun:
    exit_code: int
    generated: int  # test cases schemathesis says it generated
    answered: dict[int, int]  # what the service answered meanwhile, by status
    output: str

    @property
    def requests(self) -> int:
        return sum(self.answered.values())

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.answered.items() if status >= 500)

    @property
    def passed(self) -> bool:
        return self.exit_code == 0 and self.server_errors == 0


def run_schemathesis(
    url: str, *, examples: int, seed: int = 1, report: Path | None = None, timeout: float = 900
) -> SchemaRun:
    """Fuzz every route of ``url``'s ``/openapi.json`` except ``FAULT_ROUTES``.

    Args:
        examples: schemathesis' ``--max-examples`` per operation and phase.
        report: a directory for its JUnit report, if given.
    """
    exclude = "^(" + "|".join(re.escape(path) for path in FAULT_ROUTES) + ")$"
    cmd = [_st(), "run", url + routes.OPENAPI, "--checks", ",".join(CHECKS)]
    cmd += ["--exclude-path-regex", exclude, "--max-examples", str(examples)]
    cmd += ["--seed", str(seed), "--workers", "1", "--no-color", "--request-timeout", "10"]
    if report is not None:
        cmd += ["--report", "junit", "--report-dir", str(report.resolve())]
    before = status_counts(url)
    # In a directory of its own: schemathesis keeps a crash cache (and reads a
    # config file) in its working directory, and replays cached crashes first.
    with tempfile.TemporaryDirectory(prefix="schemathesis-") as cwd:
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, check=False, cwd=cwd
        )
    answered = answered_since(before, status_counts(url))
    found = _GENERATED.findall(done.stdout)
    generated = int(found[-1]) if found else 0
    return SchemaRun(done.returncode, generated, dict(answered), done.stdout + done.stderr)


def _st() -> str:
    beside = Path(sys.executable).with_name("st")
    if beside.exists():
        return str(beside)
    found = shutil.which("st")
    if found is None:
        raise RuntimeError("schemathesis is not installed: pip install 'licensing-harness[dev]'")
    return found
