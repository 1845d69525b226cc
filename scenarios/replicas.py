"""N service processes on one database, behind one address (``licensing-harness replicas``).

Each replica is ``licensing-service serve`` on a port of its own (127.0.0.1);
in front of them, one address hands each new connection to the next replica
in turn (round-robin per connection) and passes a connection that a replica
refuses (a killed one) on to the next. Replicas start one after another, each
once the previous is ready, so the first migrates the schema and the others
find it done (the migrations' locks make a race safe too; this avoids it).

Why our own proxy in front (``scenarios.proxy.FaultProxy`` with several
upstreams) rather than HAProxy or nginx: it needs nothing installed, it is the
same proxy the rehearsals put faults into, it counts the connections each
replica took (what the tests assert), and loopback is all a test rig needs.
It is a Python process, so it is not what a fleet runs in front of replicas:
there, use HAProxy (``apt-get install haproxy``; README, "Scale-out", has a
configuration for these ports), which the replicas need no change for.

Several replicas on ONE SQLite file are real replicas (writers serialise on
the file); on PostgreSQL (``--db postgresql://...``) they are what a fleet runs.
"""

from __future__ import annotations

import secrets as secrets_module
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from loadtests.harness.errors import GateError
from loadtests.harness.processes import sigint_held
from loadtests.harness.service_process import ServiceProcess
from scenarios.pg_admin import redacted
from scenarios.proxy import FaultProxy


def describe_db(db: Path | str) -> str:
    """The database as a status line may show it: a URL's password hidden."""
    text = str(db)
    return redacted(text) if text.startswith(("postgresql://", "postgres://")) else text


class ReplicaSet:
    """``count`` replicas of the service on ``db`` and the one address in front.

    ``secret``: the webhook secret every replica verifies with (one is made when
    none is given: Stripe signs for the service, not for a replica)."""

    def __init__(
        self,
        db: Path | str,
        count: int,
        work: Path,
        *,
        port: int = 0,
        test_clock: bool = False,
        secret: str | None = None,
        pin: bool = False,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        if count < 1:
            raise GateError("a replica set needs at least one replica")
        self.db = db
        self.work = work
        self.secret = secret or "whsec_replicas_" + secrets_module.token_hex(16)
        self.processes = [
            ServiceProcess(
                db,
                work / f"replica-{i}.log",
                secret=self.secret,
                pin=pin,
                env=env,
                test_clock=test_clock,
                cwd=cwd,
            )
            for i in range(count)
        ]
        self._port = port
        self.proxy: FaultProxy | None = None

    @property
    def url(self) -> str:
        """The one address in front of the replicas."""
        assert self.proxy is not None, "not started"
        return f"http://127.0.0.1:{self.proxy.port}"

    @property
    def urls(self) -> list[str]:
        """Each replica's own address."""
        return [p.url for p in self.processes]

    @property
    def secrets(self) -> list[str]:
        return [self.secret]

    def start(self) -> ReplicaSet:
        self.work.mkdir(parents=True, exist_ok=True)
        try:
            # The first replica migrates the schema alone; the others start on it.
            for process in self.processes:
                process.start()  # returns once /health/ready answers 200
            upstreams = [("127.0.0.1", p.port) for p in self.processes]
            self.proxy = FaultProxy(upstreams=upstreams, port=self._port).start()
        except BaseException:
            self.stop()
            raise
        return self

    def dead(self) -> list[int]:
        """The replicas whose process has ended."""
        return [i for i, p in enumerate(self.processes) if not p.alive()]

    def kill(self, index: int) -> None:
        """SIGKILL one replica (the others go on; the address passes its clients on)."""
        self.processes[index].kill()

    def restart(self, index: int) -> None:
        self.processes[index].restart()

    def stop(self) -> None:
        """Every replica stopped, and the address; a Ctrl-C meanwhile is held
        until they are (the main thread's SIGINT ignored for those seconds), so
        an impatient second Ctrl-C cannot leave replicas running: each has a
        session of its own, which no terminal signal reaches."""
        with sigint_held():
            if self.proxy is not None:
                self.proxy.stop()
            ServiceProcess.stop_all(self.processes)

    def status(self) -> str:
        ports = " ".join(f":{p.port}" for p in self.processes)
        return (
            f"replicas: {len(self.processes)} on {describe_db(self.db)} behind {self.url}"
            f" (round-robin per connection) -> {ports}; logs in {self.work}"
        )

    def __enter__(self) -> ReplicaSet:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
