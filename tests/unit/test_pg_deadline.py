"""The store's client-side deadline (adapters/pg_deadline.py) on an injected
clock, with a socket pair standing in for a connection to PostgreSQL."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from licensing_service.adapters.pg_deadline import Watchdog
from tests.ticks import Ticks


class FakeConn:
    """What the watchdog uses of a psycopg connection: its descriptor."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def fileno(self) -> int:
        return self.sock.fileno()


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, server = socket.socketpair()
    ours.settimeout(1.0)
    with ours, server:
        yield ours, server


@pytest.fixture
def clock() -> Ticks:
    return Ticks(100.0)


@pytest.fixture
def watchdog(clock: Ticks) -> Watchdog:
    """On the injected clock, without its thread: the test calls ``expire``."""
    return Watchdog(0.4, monotonic=clock, start=False)


def shut(sock: socket.socket) -> bool:
    """Was the socket shut down (a read returns end of file at once)?"""
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False


def test_a_call_past_its_deadline_has_its_socket_shut_down(
    pair: tuple[socket.socket, socket.socket], clock: Ticks, watchdog: Watchdog
) -> None:
    ours, _server = pair
    conn = FakeConn(ours)
    watchdog.arm(conn)
    clock.now += 0.399
    assert watchdog.expire() is False
    clock.now += 0.001
    assert watchdog.expire() is True
    assert shut(ours)  # the blocked reader (libpq) returns at once
    assert watchdog.fired == 1
    assert watchdog.expired(conn) is True  # the failure is named as the deadline's
    assert watchdog.expired(conn) is False  # once
    assert watchdog.expire() is False  # nothing armed any more


def test_a_call_answered_in_time_is_never_touched(
    pair: tuple[socket.socket, socket.socket], clock: Ticks, watchdog: Watchdog
) -> None:
    ours, server = pair
    conn = FakeConn(ours)
    watchdog.arm(conn)
    clock.now += 0.3
    watchdog.disarm()
    clock.now += 10
    assert watchdog.expire() is False
    assert watchdog.expired(conn) is False
    server.sendall(b"x")
    assert ours.recv(1) == b"x"  # the connection still works


def test_each_call_gets_its_own_deadline(
    pair: tuple[socket.socket, socket.socket], clock: Ticks, watchdog: Watchdog
) -> None:
    conn = FakeConn(pair[0])
    for _ in range(3):  # three quick calls in a row: 0.9 s in all, none too slow
        watchdog.arm(conn)
        clock.now += 0.3
        assert watchdog.expire() is False
        watchdog.disarm()
    watchdog.arm(conn)
    clock.now += 0.41
    assert watchdog.expire() is True


def test_the_thread_ends_a_silent_call_and_stops(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, _server = pair
    watchdog = Watchdog(0.05)  # the real clock: the thread's own waits
    try:
        watchdog.arm(FakeConn(ours))
        assert shut(ours)  # within the socket's 1 s timeout: the 0.05 s deadline fired
        assert watchdog.fired == 1
    finally:
        watchdog.stop()
    assert watchdog._thread is not None and not watchdog._thread.is_alive()
