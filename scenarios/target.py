"""The service a rehearsal drives, and the licenses it drives it with.

Either the reference service started for the rehearsal (a temporary SQLite file,
``--test-clock``, the breaker the file asks for) or an external ``--target``,
whose capabilities are asked, not assumed: a scenario that needs fault injection
or the test clock is skipped on a target that does not offer them.

Licenses are made through the public API (:mod:`loadtests.harness.provision`),
and some are then suspended by a signed ``invoice.payment_failed``, so the load
knows, for each license, what every answer must say.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from fixtures.target import target_clock
from licensing_service.contract import routes
from loadtests.harness.checks.invoices import invoice_event, new_ids
from loadtests.harness.provision import Credential, Provisioner, ProvisionError, provision
from loadtests.harness.service_process import ServiceProcess, service
from loadtests.rehearsal_load import LoadLicense
from scenarios.fault_control import FaultControl

if TYPE_CHECKING:
    from scenarios.replicas import ReplicaSet


@dataclass(frozen=True, slots=True)
class Target:
    base_url: str
    secrets: tuple[str, ...]
    managed: bool  # started by the runner (so kill/restart are possible)
    capabilities: frozenset[str]  # of "faults", "test_clock", "process"
    why_not: Mapping[str, str]  # capability -> why it is missing
    process: ServiceProcess | None = None  # the started service (kill, restart, its database)
    # Several replicas: ``base_url`` is replica 0's own address (the fault and
    # clock controls, /health), ``client_url`` the round-robin one in front.
    replicas: ReplicaSet | None = None
    client_url: str | None = None
    db_url: str | None = None  # PostgreSQL, straight (not through a proxy): for the judges

    @property
    def clients(self) -> str:
        """Where the load and the probes go."""
        return self.client_url or self.base_url

    def missing(self, needs: frozenset[str]) -> str | None:
        """Why a scenario needing ``needs`` cannot run here, or None."""
        lacking = sorted(needs - self.capabilities)
        if not lacking:
            return None
        return "; ".join(f"needs {n}: {self.why_not.get(n, 'not offered')}" for n in lacking)


@contextlib.contextmanager
def open_target(
    url: str | None,
    secrets: tuple[str, ...],
    work: Path,
    env: Mapping[str, str],
    *,
    db: str | None = None,
    replicas: int = 1,
) -> Iterator[Target]:
    """An external ``url`` as it is, or the reference service started in ``work``
    as a process the runner may kill -9 and restart on the same database:
    a SQLite file there, or ``db`` (a PostgreSQL URL, maybe through a proxy),
    ``replicas`` processes behind one address when more than one."""
    if url is not None:
        with service(url, secrets, work, pin=False) as (base, found, _):
            yield probe(base, tuple(found), managed=False)
        return
    if replicas > 1:
        from scenarios.replicas import ReplicaSet

        assert db is not None, "replicas share a PostgreSQL database"
        with ReplicaSet(db, replicas, work, test_clock=True, env=env, cwd=work) as group:
            first = group.processes[0]
            offered = probe(first.url, tuple(group.secrets), managed=True)
            yield replace(offered, process=first, replicas=group, client_url=group.url)
        return
    where = db if db is not None else work / "rehearsal.db"
    with ServiceProcess(where, work / "service.log", env=env, cwd=work) as process:
        yield replace(probe(process.url, tuple(process.secrets), managed=True), process=process)


def probe(base: str, secrets: tuple[str, ...], managed: bool) -> Target:
    why: dict[str, str] = {}
    caps: set[str] = set()
    with httpx.Client(base_url=base, timeout=5) as client:
        try:
            clock = client.get(routes.HARNESS_CLOCK).status_code == 200
        except httpx.HTTPError:
            clock = False
        if clock:
            caps.add("test_clock")
        else:
            why["test_clock"] = (
                f"the target has no {routes.HARNESS_CLOCK} (not started with --test-clock)"
            )
        reason = FaultControl(client).available()
        if reason is None:
            caps.add("faults")
        else:
            why["faults"] = reason
    if managed:
        caps.update({"process", "postgresql"})  # the runner skips earlier without a server
    else:
        why["process"] = "kill and restart need the service the runner started (no --target)"
        why["postgresql"] = (
            "the runner starts the service on a PostgreSQL database of its own (no --target)"
        )
    return Target(base, secrets, managed, frozenset(caps), why)


def licenses(target: Target, active: int, suspended: int, *, seed: int) -> list[LoadLicense]:
    """``active + suspended`` new licenses, the last ``suspended`` of them
    suspended by a failed invoice before the rehearsal starts."""
    creds = provision(
        target.base_url, target.secrets, active + suspended, seed=seed, prefix="rehearse"
    )
    made = [_load_license(c, "active") for c in creds[:active]]
    if suspended:
        with httpx.Client(base_url=target.base_url, timeout=10) as client:
            clock = target_clock(target.base_url + routes.WEBHOOK, client)
            sender = Provisioner(client, target.secrets, clock)
            ids = new_ids()
            for cred in creds[active:]:
                event = invoice_event(
                    cred, paid=False, invoice_id=ids.new("in"), created=int(clock()) + 1, ids=ids
                )
                response = sender.send_event(event)
                if response.status_code != 200:
                    raise ProvisionError(
                        f"the failed invoice suspending {cred.email}"
                        f" answered {response.status_code}"
                    )
                made.append(_load_license(cred, "suspended"))
    return made


def _load_license(cred: Credential, state: str) -> LoadLicense:
    return LoadLicense(
        email=cred.email,
        token=cred.token,
        fingerprint=cred.fingerprint,
        state="suspended" if state == "suspended" else "active",
        stripe_customer_id=cred.stripe_customer_id,
        subscription_id=cred.subscription_id,
    )


__all__ = ["Target", "licenses", "open_target", "probe"]
