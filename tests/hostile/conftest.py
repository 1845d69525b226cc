"""Servers for the hostile-input tests: uvicorn in a thread (the limits), or
the CLI in a subprocess with seeded customers (the fuzzers)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from scenarios.hostile_service import Service, reference_service
from tests import conftest
from tests.live import LiveServer


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    started: list[LiveServer] = []

    def make(**settings: object) -> LiveServer:
        sub = tmp_path / f"s{len(started)}"
        sub.mkdir()
        srv = LiveServer(conftest.test_settings(sub, **settings))
        started.append(srv.start())
        return srv

    yield make
    for srv in started:
        srv.stop()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """``serve --test-clock`` on a temporary SQLite file, 20 seeded customers,
    checkout and portal pointed at a fake Stripe API on 127.0.0.1."""
    with reference_service(tmp_path_factory.mktemp("hostile"), customers=20) as running:
        yield running
