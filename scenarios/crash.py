"""kill -9 in the middle of a webhook storm, restart on the same database, go on.

``run_crash_restart`` plays it.

The storm is :mod:`scenarios.storm`'s (the same stream, oracle, test clock and
Stripe retry schedule), sent to a service this module kills with SIGKILL at
``kills`` points spread over the storm: each time half of a batch of
concurrent deliveries has been answered, so the others are in flight (some
committed and not yet answered, some not yet committed, as the race falls),
and one more delivery is known to be in flight: with every unit of work held
a second (a ``db.latency_ms`` fault), the kill waits until that delivery's
request has been written to the service, so it cannot have been answered
(a fast service may otherwise answer a whole batch before the kill). The
service is then started again on the same SQLite file and port; the storm sets
the restarted service's clock back to where the storm had it (a restart starts
on real time and with no fault) and re-applies the outage fault if one was on.
Every delivery the kill left unanswered is a network error to the sender, which
retries it as Stripe would.

Afterwards, from the SQLite file itself (:mod:`scenarios.storm_db`) and from
the answers (:mod:`scenarios.storm_judge`):

* no event acknowledged 2xx is lost: each is ``completed`` in ``webhook_events``;
* none is applied twice: at most one 2xx answer without ``idempotent: true``
  per event id, at most one ``status_change`` audit row per event;
* no audit row is lost or doubled: one ``license_created`` per license, each
  license's status-change trail consistent and ending at its status;
* no outbox email is lost or doubled: each email the oracle expects, once;
* every license ends as the oracle says (``instant`` validation).

API (synchronous)::

    with ServiceProcess(db, log) as service:
        result = run_crash_restart(service, StormConfig(events=10_000), kills=5)
    result.passed, result.lost, result.applied_twice, result.kills

By default the crash storm has no 5xx outage (``outage_seconds=0``): the kills
are the fault. Give a config with an outage to have both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from loadtests.harness.service_process import ServiceProcess
from scenarios.storm import StormConfig, StormError, StormProgress, StormResult, run_storm

DEFAULT_KILLS = 3
CRASH_STORM = StormConfig(outage_seconds=0)


def run_crash_restart(
    service: ServiceProcess,
    config: StormConfig | None = None,
    *,
    kills: int = DEFAULT_KILLS,
    progress: Callable[[StormProgress], None] | None = None,
) -> StormResult:
    """The storm against ``service`` (started), killed ``kills`` times; judged on its database."""
    if kills < 1:
        raise StormError(f"kills must be at least 1, not {kills}")
    config = config or CRASH_STORM
    if config.events < kills + 1:
        config = replace(config, events=kills + 1)
    return run_storm(
        service.url,
        service.secrets,
        config,
        db=service.db,
        progress=progress,
        crasher=service,
        kills=kills,
    )
