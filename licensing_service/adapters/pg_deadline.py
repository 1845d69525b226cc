"""The client-side deadline on every PostgreSQL call.

``statement_timeout`` and ``lock_timeout`` are the server's: they cannot fire
when the server never sees the query. On a path that silently drops traffic
(a black hole whose kernel still acknowledges, a firewall that drops), psycopg
waits in ``poll`` on its socket for an answer that never comes, and since the
store runs on the event loop, the whole service waits with it; TCP keepalives
and ``tcp_user_timeout`` do not end it while something acknowledges.

THE DEADLINE BOUND: a call (one statement, or a BEGIN, COMMIT, ROLLBACK) that
has not been answered ``DEADLINE_MARGIN_SECONDS`` after the statement timeout
(``LH_DB_TIMEOUT_MS``) is ended by the store's watchdog thread, which shuts
the connection's socket down (``shutdown(SHUT_RDWR)`` on a dup of
``conn.fileno()``): libpq's blocked read returns at once, psycopg raises
``OperationalError`` (here :class:`DeadlineExceeded`), the store maps it to
StorageUnavailable for the breaker, and the connection, now broken, is
discarded by the pool (never handed out again), which connects anew once the
path heals. A server that answers, even with its own timeout error, is
answered first: the margin covers the error's way back.

Cheap on the hot path: one watchdog thread per store (the store runs one call
at a time), which sleeps while no call is armed; arming a call is a tuple
written to an attribute, disarming it a lock taken uncontended. No timer or
thread per call. Validations answered from the customer view arm nothing.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Callable
from time import monotonic
from typing import Any

import psycopg

DEADLINE_MARGIN_SECONDS = 0.1
# The idle watchdog looks at its state at least this often (so a lost wake-up
# costs at most this much of the bound; none is expected).
IDLE_CHECK_SECONDS = 1.0


class DeadlineExceeded(psycopg.OperationalError):
    """PostgreSQL did not answer a call within the client-side deadline."""


class Watchdog:
    """Holds the active call's deadline; ends the call when it passes."""

    def __init__(
        self,
        seconds: float,
        *,
        monotonic: Callable[[], float] = monotonic,
        start: bool = True,
    ) -> None:
        self.seconds = seconds
        self._monotonic = monotonic
        self._active: tuple[float, Any] | None = None
        self._lock = threading.Lock()
        self._idle = False
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._fired_on: Any = None
        self.fired = 0  # calls ended by the deadline
        self._thread: threading.Thread | None = None
        if start:
            self._thread = threading.Thread(target=self._run, name="pg-deadline", daemon=True)
            self._thread.start()

    # ---------------------------------------------------------- the caller's side

    def arm(self, conn: Any) -> None:
        """A call on ``conn`` starts now; it must be answered within ``seconds``."""
        self._active = (self._monotonic() + self.seconds, conn)
        if self._idle:  # read after the write: the watchdog re-reads after flagging idle
            self._wake.set()

    def disarm(self) -> None:
        """The call ended; after this the watchdog never touches its connection."""
        with self._lock:
            self._active = None

    def expired(self, conn: Any) -> bool:
        """Did the deadline end the last call on ``conn``? (Asked once, when it failed.)"""
        if self._fired_on is conn:
            self._fired_on = None
            return True
        return False

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(IDLE_CHECK_SECONDS + 1)

    # ---------------------------------------------------------- the watchdog's side

    def expire(self) -> bool:
        """End the armed call if its deadline has passed; whether it did."""
        with self._lock:
            active = self._active
            if active is None or self._monotonic() < active[0]:
                return False
            self._active = None
            conn = active[1]
            self._fired_on = conn
            self.fired += 1
            _shut_down(conn)
        return True

    def _run(self) -> None:
        stop = self._stop
        while not stop.is_set():
            active = self._active
            if active is None:
                self._idle = True
                if self._active is None:
                    self._wake.wait(IDLE_CHECK_SECONDS)
                self._idle = False
                self._wake.clear()
                continue
            delay = active[0] - self._monotonic()
            if delay > 0:
                stop.wait(delay)
                continue
            self.expire()


def _shut_down(conn: Any) -> None:
    """Shut the connection's socket down: its blocked reader returns at once.
    Called under the watchdog's lock, while the call is still armed, so the
    descriptor is the connection's (it is closed only after disarm)."""
    with contextlib.suppress(OSError, psycopg.Error):
        fd = os.dup(conn.fileno())
        with socket.socket(fileno=fd) as sock:
            sock.shutdown(socket.SHUT_RDWR)
