"""Three replicas of the service on one database, started once per module and
store: real processes on 127.0.0.1 behind the round-robin address."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from licensing_harness.replica_set import ReplicaSet

REPLICAS = 3
# The deliverer polls every 50 ms, so the three replicas contend for the outbox.
ENV = {"LH_EMAIL_POLL_SECONDS": "0.05"}


@pytest.fixture(scope="module", params=["sqlite"])
def replicas(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ReplicaSet]:
    work = tmp_path_factory.mktemp(f"replicas-{request.param}")
    db: Path | str = work / "shared.db"
    with ReplicaSet(db, REPLICAS, work, test_clock=True, env=ENV) as running:
        yield running
