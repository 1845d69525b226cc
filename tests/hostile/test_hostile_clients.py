"""The rehearsal step that holds hostile connections: it really holds them,
and it reports what the server did with each part."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from scenarios.hostile_clients import PARTS, hold_hostile_connections
from tests.live import LiveServer


def test_every_part_is_refused_or_closed_by_a_server_with_limits(
    live: Callable[..., LiveServer],
) -> None:
    srv = live(header_timeout_seconds=0.3, body_timeout_seconds=0.3)
    result = hold_hostile_connections(srv.url, count=12, seconds=1.5)
    assert result.connect_errors == 0
    assert result.opened > 12  # refused connections were reopened
    by_part = {key.split(": ")[0]: key.split(": ")[1] for key in result.outcomes}
    assert set(by_part) == set(PARTS)
    assert result.outcomes["idle: closed"] >= 2
    for part in ("half-head", "drip-head", "half-body", "drip-body"):
        assert result.outcomes[f"{part}: 408"] >= 2, result.outcomes
    assert result.outcomes["oversized: 413"] + result.outcomes["oversized: reset"] >= 2


def test_a_server_without_deadlines_keeps_them_all_open(live: Callable[..., LiveServer]) -> None:
    """The planted failure: with deadlines longer than the run, nothing is
    refused, and the step says so (it would against the service before the limits)."""
    srv = live(header_timeout_seconds=300, body_timeout_seconds=300)
    result = hold_hostile_connections(
        srv.url, count=10, seconds=1.0, parts=["idle", "half-head", "drip-body"]
    )
    assert result.opened == 10
    assert result.open_at_end == 10
    assert not result.outcomes


def test_only_loopback_targets() -> None:
    with pytest.raises(ValueError, match="loopback"):
        hold_hostile_connections("http://example.com:80", count=1, seconds=0.1)
    with pytest.raises(ValueError, match="unknown parts"):
        hold_hostile_connections("http://127.0.0.1:1", count=1, seconds=0.1, parts=["nice"])
