"""Locust's master and workers for the gate: each worker's share of the inputs, and the
master's roll of its workers.

The gate's inputs live on the master's machine: the licenses it provisioned, the webhook
stream it generated, the target's webhook secret, and the workloads' settings (the
``LH_*`` variables of :mod:`loadtests.common`). A worker, on this machine or another,
knows none of them. At test start the master sends each connected worker its share
(:mod:`.shares`: every license and every event to exactly one worker) over Locust's own
channel, before the spawn message that starts its users; the worker writes the share to
files of its own and points the workloads' variables at them, so the workloads read
their inputs as they do in a single process.

The master also writes its roll to ``LH_LOAD_STATUS`` (JSON, every half second and at
exit): how many workers are connected, how many it had at the start, how many it lost
or gained during the run. The gate shows it and judges by it: a worker lost mid-run
takes its last unsent requests with it, so the merged counts are no longer the run's.

``LH_LOAD_PARTS`` (a folder; tests and audits) makes every worker write, at exit, what it
counted itself and the histograms it sent, so the master's merge can be checked
against its parts. Locust is imported lazily, as in :mod:`.hdr`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, MutableMapping
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loadtests.harness import hdr
from loadtests.harness.histograms import EndpointHistograms
from loadtests.harness.model import WorkerRoll
from loadtests.harness.shares import split_lines, split_stream

if TYPE_CHECKING:
    from locust.env import Environment

INPUTS_MESSAGE = "lh_inputs"
STATUS_ENV = "LH_LOAD_STATUS"
PARTS_ENV = "LH_LOAD_PARTS"
CREDENTIALS_ENV = "LH_LOAD_CREDENTIALS"
STREAM_ENV = "LH_LOAD_STREAM"
SECRETS_ENV = "LH_WEBHOOK_SECRET"
# The workloads' settings a worker takes from its master (see loadtests.common).
SETTINGS = (
    "LH_LOAD_USERS",
    "LH_LOAD_SECONDS",
    "LH_LOAD_WARMUP",
    "LH_LOAD_CACHE_SCALE",
    "LH_LOAD_HEARTBEAT_SECONDS",
    "LH_LOAD_BURST",
    "LH_STORM_RATE",
    "LH_OPEN_RATE",
    "LH_OPEN_SECONDS",
)
# What only the master reads or writes: a worker started by the gate does without them,
# as one on another machine must.
MASTER_ONLY = (
    CREDENTIALS_ENV,
    STREAM_ENV,
    SECRETS_ENV,
    STATUS_ENV,
    "LH_LOAD_RESULTS",
    "LH_LOAD_HDR",
    "LH_GATE_CONFIG",
    "LH_LOAD_SHAPE",
)
STATUS_EVERY_S = 0.5

log = logging.getLogger(__name__)


def read_roll(path: Path) -> WorkerRoll | None:
    """The master's latest roll; None before it has written one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # not written yet
    return WorkerRoll.from_dict(data)


def _listen(hook: Any, handler: Callable[..., None]) -> None:
    hook.add_listener(handler)


def install(environment: Environment, environ: MutableMapping[str, str] = os.environ) -> None:
    """Share the inputs (master) or take a share (worker); nothing in a local run.
    Call from an ``init`` listener, after :func:`hdr.install`."""
    from locust.runners import MasterRunner, WorkerRunner

    runner = environment.runner
    if isinstance(runner, MasterRunner):
        _master(environment, runner, environ)
    elif isinstance(runner, WorkerRunner):
        _worker(environment, runner, environ)


# ------------------------------------------------------------------ the master


def _master(environment: Environment, runner: Any, environ: MutableMapping[str, str]) -> None:
    import gevent

    status = environ.get(STATUS_ENV)
    options = environment.parsed_options
    roll = WorkerRoll(expected=int(getattr(options, "expect_workers", 0) or 0))
    running = False

    def active() -> list[str]:
        nodes = runner.clients.ready + runner.clients.spawning + runner.clients.running
        return sorted((node.id for node in nodes), key=runner.get_worker_index)

    def on_test_start(**_kw: Any) -> None:
        nonlocal running
        workers = active()
        running, roll.at_start, roll.lost, roll.late = True, len(workers), 0, 0
        shares = _shares(environ, len(workers))
        for index, (client_id, share) in enumerate(zip(workers, shares, strict=True)):
            share["index"] = index
            runner.send_message(INPUTS_MESSAGE, share, client_id=client_id)

    def on_test_stop(**_kw: Any) -> None:
        nonlocal running
        running = False

    def on_worker_connect(**_kw: Any) -> None:
        if running:
            roll.late += 1

    def write() -> None:
        roll.state = str(runner.state)
        roll.connected = len(active())
        if running:
            roll.lost = max(roll.lost, roll.at_start - roll.connected)
        if status:
            _write_json(Path(status), asdict(roll))

    def keep_writing() -> None:
        while True:  # ends with the process: a greenlet of the master's own hub
            write()
            gevent.sleep(STATUS_EVERY_S)

    events = environment.events
    _listen(events.test_start, on_test_start)
    _listen(events.test_stop, on_test_stop)
    _listen(events.worker_connect, on_worker_connect)
    _listen(events.quit, lambda **_kw: write())
    gevent.spawn(keep_writing)


def _shares(environ: MutableMapping[str, str], count: int) -> list[dict[str, Any]]:
    """The run's inputs in ``count`` shares, as the inputs message carries them."""
    if count == 0:
        return []
    credentials = environ.get(CREDENTIALS_ENV)
    if not credentials:
        raise SystemExit(f"the master needs {CREDENTIALS_ENV} to share licenses with its workers")
    licenses = split_lines(Path(credentials).read_text(encoding="utf-8").splitlines(), count)
    stream_path = environ.get(STREAM_ENV)
    streams: list[list[str] | None] = (
        list(split_stream(Path(stream_path).read_text(encoding="utf-8").splitlines(), count))
        if stream_path
        else [None] * count
    )
    secrets = [s for s in environ.get(SECRETS_ENV, "").split(",") if s]
    settings = {k: environ[k] for k in SETTINGS if k in environ}
    return [
        {"of": count, "licenses": mine, "stream": stream, "secrets": secrets, "settings": settings}
        for mine, stream in zip(licenses, streams, strict=True)
    ]


# ------------------------------------------------------------------ a worker


def _worker(environment: Environment, runner: Any, environ: MutableMapping[str, str]) -> None:
    folder: Path | None = None
    share: dict[str, int] = {}  # which share this worker got, for the audit

    def on_inputs(msg: Any, **_kw: Any) -> None:
        nonlocal folder
        data = msg.data
        if not data["licenses"]:
            log.error("the master's share for this worker holds no licenses")
        folder = Path(tempfile.mkdtemp(prefix="lh-worker-"))  # 0700: tokens are inside
        credentials = folder / "credentials.jsonl"
        credentials.write_text("".join(line + "\n" for line in data["licenses"]), "utf-8")
        environ[CREDENTIALS_ENV] = str(credentials)
        if data.get("stream") is not None:
            stream = folder / "storm.jsonl"
            stream.write_text("".join(line + "\n" for line in data["stream"]), "utf-8")
            environ[STREAM_ENV] = str(stream)
            environ[SECRETS_ENV] = ",".join(data["secrets"])
        for key, value in data["settings"].items():
            if key in SETTINGS:
                environ[key] = str(value)
        # The plugin was installed before the master's settings came.
        warmup = float(data["settings"].get("LH_LOAD_WARMUP", 0) or 0)
        hdr.histograms_of(environment).warmup_s = warmup
        count = len(data["licenses"])
        share.update(index=data["index"], of=data["of"], licenses=count)
        share["deliveries"] = sum('"kind":"delivery"' in line for line in data["stream"] or ())
        log.info("share %d of %d: %d licenses", data["index"] + 1, data["of"], count)

    def on_quit(**_kw: Any) -> None:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)

    runner.register_message(INPUTS_MESSAGE, on_inputs)
    _listen(environment.events.quit, on_quit)
    parts = environ.get(PARTS_ENV)
    if parts:
        _audit(environment, runner, Path(parts), share)


def _audit(environment: Environment, runner: Any, folder: Path, share: dict[str, int]) -> None:
    """What this worker counted (requests and failures by name, from Locust's request
    event, apart from the histograms), everything it sent, and its share's size,
    written at exit."""
    counts: dict[str, list[int]] = {}
    sent: EndpointHistograms | None = None

    def on_request(name: str, exception: BaseException | None = None, **_kw: Any) -> None:
        mine = counts.setdefault(name, [0, 0])
        mine[0] += 1
        mine[1] += exception is not None

    def on_test_start(**_kw: Any) -> None:
        nonlocal sent
        # After hdr's own listener: the master's start is the worker's now. Reports
        # sent before (empty, from before the run) are no part of it.
        sent = EndpointHistograms(start=hdr.histograms_of(environment).start)

    def on_report(data: dict[str, Any], **_kw: Any) -> None:
        payload = data.get(hdr.REPORT_KEY)  # hdr's listener, installed first, put it there
        if payload is not None and sent is not None:
            sent.merge_encoded(payload)

    def on_quit(**_kw: Any) -> None:
        histograms = sent.encode() if sent is not None else None
        part = {"counts": counts, "histograms": histograms, "share": share}
        _write_json(folder / f"worker-{runner.client_id}.json", part)

    events = environment.events
    _listen(events.request, on_request)
    _listen(events.test_start, on_test_start)
    _listen(events.report_to_master, on_report)
    _listen(events.quit, on_quit)


def _write_json(path: Path, data: Any) -> None:
    # Whole then renamed: the gate polls the status file while it is rewritten.
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data), encoding="utf-8")
    partial.replace(path)
