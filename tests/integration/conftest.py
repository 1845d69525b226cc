"""Fixtures the integration tests of the HTTP paths share."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests import conftest
from tests.live import LiveServer


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    """Starts servers with settings and uvicorn overrides; stops them after the test."""
    started: list[LiveServer] = []

    def make(uvicorn_overrides: dict[str, object] | None = None, **settings: object) -> LiveServer:
        sub = tmp_path / f"s{len(started)}"
        sub.mkdir()
        srv = LiveServer(conftest.test_settings(sub, **settings), **(uvicorn_overrides or {}))
        started.append(srv.start())
        return srv

    yield make
    for srv in started:
        srv.stop()
