"""The Locust plugin that records every request exactly, merged across worker processes.

The histograms themselves are :mod:`.histograms`. ``install`` wires them up. Every
process records its own requests; workers send what they recorded since their last
report to the master and start over (delta reporting), and the master adds those into
its own copy, which is the run's whole picture: ``histograms_of(environment)`` is that
live state, and at exit the master writes ``LoadSummary`` JSON. Locust is imported
lazily, because ``import locust`` monkey-patches the whole process with gevent, which
pure users (tests, reports) must not suffer.
"""

from __future__ import annotations

import json
import logging
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loadtests.harness.histograms import EndpointHistograms
from loadtests.harness.model import LoadSummary

if TYPE_CHECKING:
    from locust.env import Environment

# Key added to Locust's worker -> master report; "stats" and "errors" are Locust's own.
REPORT_KEY = "lh_hdr"
# Custom message the master sends workers at test start: the run's start time, so that
# every process counts timeline seconds from the same instant and they add up exactly.
START_MESSAGE = "lh_start"

# The wall clock, on purpose: Locust stamps requests with ``time.time()`` (its
# ``start_time``), and timeline seconds are counted on that same clock.
wall_clock: Callable[[], float] = time.time

log = logging.getLogger(__name__)


@dataclass(eq=False)
class _Plugin:
    histograms: EndpointHistograms
    results_path: str | None
    tags: Mapping[str, tuple[str, ...]]
    clock: Callable[[], float]
    started: float | None = None
    stopped: float | None = None
    aborted: str | None = None
    master_start: float | None = None  # on a worker: the start the master sent, not yet used

    def duration_s(self) -> float:
        if self.started is None:
            return 0.0
        stopped = self.stopped if self.stopped is not None else self.clock()
        return max(stopped - self.started, 0.0)

    def summary(self) -> LoadSummary:
        return self.histograms.summary(self.duration_s(), self.tags, aborted=self.aborted)


_PLUGINS: weakref.WeakKeyDictionary[Environment, _Plugin] = weakref.WeakKeyDictionary()


def _listen(hook: Any, handler: Callable[..., None]) -> None:
    # Locust's EventHook.add_listener is unannotated; keep the one untyped call here.
    hook.add_listener(handler)


def install(
    environment: Environment,
    *,
    results_path: str | None,
    tags: Mapping[str, tuple[str, ...]],
    clock: Callable[[], float] = wall_clock,
    warmup_s: float = 0.0,
    histograms_path: str | None = None,
) -> EndpointHistograms:
    """Record every request of ``environment`` exactly; call from an ``init`` listener.

    The runner must exist (its kind decides the role). Workers report deltas to the
    master; the master (or a local runner) writes ``results_path`` at exit, on Locust's
    ``quit`` event, which fires after the runner has quit and so after the workers' final
    reports were merged (``quitting`` can fire before that, on Ctrl-C or SIGTERM).
    ``histograms_path``, if given, receives the merged histograms themselves, encoded
    (``EndpointHistograms.encode``), for checking or re-merging them later.
    """
    from locust.runners import MasterRunner, WorkerRunner

    runner = environment.runner
    if runner is None:
        raise ValueError("install the HDR plugin once the runner exists (in an init listener)")
    if environment in _PLUGINS:
        raise RuntimeError("the HDR plugin is already installed on this environment")
    plugin = _Plugin(EndpointHistograms(warmup_s=warmup_s), results_path, dict(tags), clock)
    _PLUGINS[environment] = plugin
    histograms = plugin.histograms

    def on_request(
        name: str,
        response_time: float,
        exception: BaseException | None = None,
        start_time: float | None = None,
        **_kw: Any,
    ) -> None:
        # Locust's clients give start_time (unix s); custom events may not.
        when = start_time + response_time / 1000.0 if start_time is not None else clock()
        histograms.record(name, response_time, exception is None, when)

    def on_test_start(**_kw: Any) -> None:
        if isinstance(runner, WorkerRunner):
            # The master's start arrived just before the spawn message that fired this.
            start, plugin.master_start = plugin.master_start, None
            histograms.reset(start=start if start is not None else clock())
            return
        plugin.started, plugin.stopped, plugin.aborted = clock(), None, None
        histograms.reset(start=plugin.started)
        if isinstance(runner, MasterRunner):
            # Sent before the spawn messages, so it reaches each worker first.
            runner.send_message(START_MESSAGE, {"start": plugin.started})

    def on_start_message(msg: Any, **_kw: Any) -> None:
        plugin.master_start = float(msg.data["start"])

    def on_test_stop(**_kw: Any) -> None:
        if not isinstance(runner, WorkerRunner):
            plugin.stopped = clock()

    def on_report_to_master(data: dict[str, Any], **_kw: Any) -> None:
        # Delta reporting: what was sent is the master's now; the worker starts over.
        data[REPORT_KEY] = histograms.encode()
        histograms.reset()

    def on_worker_report(data: dict[str, Any], **_kw: Any) -> None:
        payload = data.get(REPORT_KEY)
        if payload is not None:
            histograms.merge_encoded(payload)

    def on_quit(**_kw: Any) -> None:
        if isinstance(runner, WorkerRunner):
            return
        if results_path is not None:
            write_summary(plugin.summary(), results_path)
        if histograms_path is not None:
            _write_whole(Path(histograms_path), json.dumps(histograms.encode()))

    events = environment.events
    _listen(events.request, on_request)
    _listen(events.test_start, on_test_start)
    _listen(events.test_stop, on_test_stop)
    _listen(events.report_to_master, on_report_to_master)
    _listen(events.worker_report, on_worker_report)
    _listen(events.quit, on_quit)
    if isinstance(runner, WorkerRunner):
        runner.register_message(START_MESSAGE, on_start_message)
    return histograms


def _plugin(environment: Environment) -> _Plugin:
    plugin = _PLUGINS.get(environment)
    if plugin is None:
        raise LookupError("the HDR plugin is not installed on this environment (see install)")
    return plugin


def histograms_of(environment: Environment) -> EndpointHistograms:
    """The live histograms: on the master, everything the workers have reported so far."""
    return _plugin(environment).histograms


def summary_of(environment: Environment) -> LoadSummary:
    """The run so far (duration up to now if it has not stopped), as it would be written."""
    return _plugin(environment).summary()


def mark_aborted(environment: Environment, reason: str) -> None:
    """Record why the run is being stopped early; the written summary carries it."""
    _plugin(environment).aborted = reason


def corrected(environment: Environment, name: str, ms: float) -> None:
    """Record a paced request's latency from its intended send time (see pacing)."""
    _plugin(environment).histograms.record_corrected(name, ms)


def write_summary(summary: LoadSummary, path: str) -> None:
    target = Path(path)
    _write_whole(target, json.dumps(summary.to_dict(), indent=2) + "\n")
    log.info("HDR summary written to %s", target)


def _write_whole(target: Path, text: str) -> None:
    # Written whole then renamed, so a reader never sees half a file.
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(target)
