"""Three replicas of the service on one database, started once per module and
store: real processes on 127.0.0.1 behind the round-robin address. On SQLite
(one file) and on PostgreSQL (the ``pg_url`` database; skipped without a server)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from scenarios.replicas import ReplicaSet

REPLICAS = 3


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def replicas(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ReplicaSet]:
    work = tmp_path_factory.mktemp(f"replicas-{request.param}")
    db: Path | str = work / "shared.db"
    if request.param == "postgres":
        db = request.getfixturevalue("replicas_pg")
    env = {
        # The deliverers poll every 50 ms, so the three replicas contend for the outbox.
        "LH_EMAIL_POLL_SECONDS": "0.05",
        # One mailbox for all three, wherever the database is.
        "LH_EMAIL_SINK": str(work / "emails.jsonl"),
    }
    with ReplicaSet(db, REPLICAS, work, test_clock=True, env=env) as running:
        yield running


@pytest.fixture(scope="module")
def replicas_pg(worker_id: str) -> Iterator[str]:
    """A PostgreSQL database of the module's own: the replicas keep state from
    test to test, which the per-test ``pg_url`` would truncate under them."""
    from tests import pg

    reason = pg.reachable()
    if reason is not None:
        pytest.skip(reason)
    name = pg.database_name(f"{worker_id}_replicas")
    url = pg.create(name)
    try:
        yield url
    finally:
        pg.drop(name)
