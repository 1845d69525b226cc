from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from loadtests.harness.service_process import service


@dataclass(frozen=True)
class Reference:
    url: str
    secrets: list[str]


@pytest.fixture
def reference(tmp_path: Path) -> Iterator[Reference]:
    """The reference service in a subprocess (--test-clock, temporary SQLite)."""
    with service(None, [], tmp_path, pin=False) as (url, secrets, _):
        yield Reference(url, secrets)
