"""Real Locust runs with the HDR plugin: the summary counts exactly what Locust counted.

Two runs start together (they take ~3 s of load each, plus start-up): one distributed
(``--processes 2``: a master and two forked workers, where the master records nothing
itself, so every request in its summary came through a worker report, the final ones
included) and one local. Each locustfile also writes Locust's own totals at the same
moment the plugin writes its summary, to compare against.
"""

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from loadtests.harness.model import LoadSummary
from tests.live import free_port

# Real Locust runs, local and distributed: the slow set (scripts/test --all).
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
PACED_RATE = 20.0  # per paced user; two paced users

LOCUSTFILE = """
import json
import os

from locust import HttpUser, constant, events, task
from locust.runners import WorkerRunner

from loadtests.harness import hdr
from loadtests.harness.pacing import arrival_rate_task

TAGS = {"ok": ("fast",), "fail": ("broken",), "paced": ("open",)}


@events.init.add_listener
def _install(environment, **_kw):
    hdr.install(environment, results_path=os.environ["LH_TEST_SUMMARY"], tags=TAGS)

    def locust_totals(**_kw):
        if isinstance(environment.runner, WorkerRunner):
            return
        stats = environment.stats
        totals = {
            "requests": stats.total.num_requests,
            "failures": stats.total.num_failures,
            "names": {
                name: [entry.num_requests, entry.num_failures]
                for (name, _method), entry in stats.entries.items()
            },
        }
        totals["start"] = hdr.histograms_of(environment).start
        with open(os.environ["LH_TEST_LOCUST"], "w") as out:
            json.dump(totals, out)

    def worker_start(**_kw):
        # Runs after the plugin's own test_start listener has taken the master's start.
        if isinstance(environment.runner, WorkerRunner):
            path = os.environ["LH_TEST_LOCUST"] + f".worker-{os.getpid()}"
            with open(path, "w") as out:
                json.dump(hdr.histograms_of(environment).start, out)

    environment.events.quit.add_listener(locust_totals)
    environment.events.test_start.add_listener(worker_start)


class Closed(HttpUser):
    wait_time = constant(0.02)

    @task(3)
    def ok(self):
        self.client.get("/ok", name="ok")

    @task(1)
    def fail(self):
        self.client.get("/fail", name="fail")


class Paced(HttpUser):
    fixed_count = 2

    @task
    def paced(self):
        arrival_rate_task(
            self,
            rate=float(os.environ["LH_TEST_RATE"]),
            max_in_flight=4,
            iteration=lambda: self.client.get("/ok", name="paced"),
            duration_s=60,  # longer than the run: the run's end stops it
            name="paced",
        )
"""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real service would
    disable_nagle_algorithm = True  # headers and body go out separately: no 40 ms stalls

    def do_GET(self) -> None:
        status = 200 if self.path == "/ok" else 500
        body = b"ok" if status == 200 else b"broken"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # thousands of requests: keep the test output readable


@pytest.fixture(scope="module")
def host() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@dataclass
class Run:
    summary: LoadSummary
    locust: dict[str, Any]
    worker_starts: list[float]  # each worker's timeline start
    output: str


def _start(tmp: Path, host: str, extra: list[str]) -> tuple[subprocess.Popen[str], Path]:
    tmp.mkdir()
    locustfile = tmp / "locustfile.py"
    locustfile.write_text(LOCUSTFILE)
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "LH_TEST_SUMMARY": str(tmp / "summary.json"),
        "LH_TEST_LOCUST": str(tmp / "locust.json"),
        "LH_TEST_RATE": str(PACED_RATE),
    }
    args = ["-f", str(locustfile), "--headless", "-u", "4", "-r", "4", "-t", "3s"]
    args += ["--host", host, "--only-summary", "--exit-code-on-error", "0", *extra]
    process = subprocess.Popen(
        [sys.executable, "-m", "locust", *args],
        cwd=tmp,  # no locust.conf or pyproject [tool.locust] of ours is picked up
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return process, tmp


def _finish(process: subprocess.Popen[str], tmp: Path) -> Run:
    try:
        output, _ = process.communicate(timeout=40)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        pytest.fail(f"locust did not finish:\n{output}")
    assert process.returncode == 0, output
    summary = LoadSummary.from_dict(json.loads((tmp / "summary.json").read_text()))
    locust = json.loads((tmp / "locust.json").read_text())
    workers = [json.loads(p.read_text()) for p in tmp.glob("locust.json.worker-*")]
    return Run(summary, locust, workers, output)


def _master(port: int) -> list[str]:
    """The master listens (and its forked workers connect) on ``port``, locally."""
    bind = ["--master-bind-host", "127.0.0.1", "--master-bind-port", str(port)]
    return [*bind, "--master-host", "127.0.0.1", "--master-port", str(port)]


@pytest.fixture(scope="module")
def runs(host: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    base = tmp_path_factory.mktemp("locust")
    started = {
        # A port of its own: on Locust's default (5557) a concurrent run's workers would
        # join this master (or this one's workers another master).
        "distributed": _start(
            base / "distributed", host, ["--processes", "2", *_master(free_port())]
        ),
        "local": _start(base / "local", host, []),
    }
    return {kind: _finish(*run) for kind, run in started.items()}


@pytest.mark.parametrize("kind", ["distributed", "local"])
def test_hdr_summary_counts_exactly_what_locust_counted(runs: dict[str, Run], kind: str) -> None:
    run = runs[kind]
    summary, locust = run.summary, run.locust
    assert "Traceback" not in run.output and "Unknown message type" not in run.output

    requests = sum(ep.requests for ep in summary.endpoints.values())
    failures = sum(ep.failures for ep in summary.endpoints.values())
    assert requests > 50, run.output  # the run really ran
    assert (requests, failures) == (locust["requests"], locust["failures"])
    for name in ("ok", "fail", "paced"):
        endpoint = summary.endpoints[name]
        assert [endpoint.requests, endpoint.failures] == locust["names"][name], name

    # The timeline holds the same requests, spread over the run's seconds.
    assert sum(p.requests for p in summary.timeline) == requests
    assert sum(p.failures for p in summary.timeline) == failures
    # From test_start to test_stop: about the 3 s asked for (Locust's timer starts a
    # little before test_start, more so on a loaded machine).
    assert 1.5 <= summary.duration_s <= 5.0
    assert summary.endpoints["ok"].tags == ("fast",)
    assert summary.endpoints["fail"].ok is None and summary.endpoints["fail"].failures > 0


def test_workers_count_timeline_seconds_from_the_masters_start(runs: dict[str, Run]) -> None:
    run = runs["distributed"]
    assert len(run.worker_starts) == 2
    assert run.worker_starts == [run.locust["start"]] * 2
    assert runs["local"].worker_starts == []


@pytest.mark.parametrize("kind", ["distributed", "local"])
def test_paced_users_report_corrected_latency_and_arrivals(runs: dict[str, Run], kind: str) -> None:
    summary = runs[kind].summary
    open_model, paced = summary.open_model, summary.endpoints["paced"]

    assert open_model is not None and paced.corrected is not None
    assert open_model.target_rate == 2 * PACED_RATE  # both paced users, once each
    assert open_model.iterations > 0
    # Each started iteration is one request (the last may be cut off by the stop), and
    # its corrected latency (from the intended start) is at least its service time.
    assert paced.corrected.count <= open_model.iterations
    assert paced.requests <= open_model.iterations
    assert paced.corrected.count >= open_model.iterations - 2 * 4  # at most 4 in flight each
    assert paced.ok is not None and paced.corrected.max >= paced.ok.p50
