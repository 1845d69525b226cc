"""Abort-early: stop a run on the master once a threshold is already broken.

Judged every second after the warm-up on the merged histograms; only a
broken ``max`` bound can be proven by partial data (see
``verdicts.should_abort``). The reason goes into the summary, and the
gate reports the run as stopped early.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from locust.env import Environment

from loadtests.harness import hdr
from loadtests.harness.gate_config import load_config
from loadtests.harness.verdicts import should_abort

log = logging.getLogger(__name__)


def watch(environment: Environment, config_path: Path) -> None:
    config = load_config(config_path)
    if not config.load.abort_early:
        return
    from locust.runners import WorkerRunner

    if isinstance(environment.runner, WorkerRunner):
        return  # judged on the master, which holds everything merged

    def on_test_start(**_kw: Any) -> None:
        import gevent

        gevent.spawn(_judge, environment, config)

    hook: Any = environment.events.test_start
    hook.add_listener(on_test_start)


def _judge(environment: Environment, config: Any) -> None:
    import gevent

    elapsed = 0.0
    # Bounded by the run: the loop ends when the runner stops or after the duration.
    while elapsed < config.load.duration_s:
        gevent.sleep(1.0)
        elapsed += 1.0
        runner = environment.runner
        if runner is None or runner.state in ("stopped", "stopping", "quitting"):
            return
        summary = hdr.summary_of(environment)
        reason = should_abort(config, summary, elapsed)
        if reason is not None:
            log.warning("aborting the run early: %s", reason)
            hdr.mark_aborted(environment, reason)
            runner.quit()
            return
